"""kabuflow: ATFT-GAT-FAN on J-Quants data as a Kubeflow Pipelines workflow."""

__version__ = "0.1.0"
