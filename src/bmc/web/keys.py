"""The API key for a consultant who has never set an environment variable.

A key typed into the page is kept in the operating system's keyring (the `keyring`
package: macOS Keychain, Windows Credential Locker, the Secret Service on Linux) or not at
all. Threat: a key leaking into the engagement's files or a log: it is never written to the
workspace, never echoed back to the page, and never put in an error message.
"""

from __future__ import annotations

import os
from typing import Any

from bmc.errors import UserError

SERVICE = "bmc"
ACCOUNT = "anthropic-api-key"


def stored_key() -> str | None:
    """The key in the keyring, if the machine has a usable keyring and a key is in it."""
    try:
        import keyring

        return keyring.get_password(SERVICE, ACCOUNT)
    except Exception:
        return None


def have_key(client: Any = None) -> bool:
    """Whether a run could reach the model: a client given (tests, the demo), the
    environment, or the keyring."""
    return client is not None or bool(os.environ.get("ANTHROPIC_API_KEY")) or bool(stored_key())


def store_key(key: str) -> None:
    if any(c.isspace() for c in key) or len(key) < 20:
        raise UserError("that does not look like an Anthropic API key: copy it again, whole.")
    try:
        import keyring

        keyring.set_password(SERVICE, ACCOUNT, key)
    except Exception:
        raise UserError(
            "this computer has no keyring bmc can use, so the key was not kept: set "
            "ANTHROPIC_API_KEY in your environment instead (the README shows how)."
        ) from None
