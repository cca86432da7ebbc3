"""bmc: run Business Model Canvas engagements with a Claude model and human agreement gates."""

__version__ = "0.1.0"
