from django.apps import AppConfig


class DiagnosisConfig(AppConfig):
    name = "poolboard.diagnosis"
    verbose_name = "Diagnosis"
