# The dashboard app has no models: it renders what the fleet, databases and alerts apps store.
