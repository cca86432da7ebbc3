"""The web workspace (`bmc serve`): a surface like the terminal, driving the same engine API
from a page in the consultant's own browser, on loopback, behind a secret token."""
