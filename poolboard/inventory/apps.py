from django.apps import AppConfig


class InventoryConfig(AppConfig):
    """Inventory as code: the section registry and the exportinventory / importinventory commands.

    It owns no tables; the apps that do register their sections from their own ready().
    """

    name = "poolboard.inventory"
    verbose_name = "Inventory"
