"""The two ways an outbound request to a user's URL fails, as user-visible ``invalid_input``
(the URL is the user's input). Messages never repeat the URL: its path or query may be a secret
(n8n and Zapier webhook URLs are bearer tokens)."""

from __future__ import annotations

from shared.errors import InvalidInput


class DestinationRefused(InvalidInput):
    """The policy will not send there: not an http(s) URL, or a host with a non-public address.
    Final: trying again cannot help."""


class SendFailed(InvalidInput):
    """The destination could not be reached: its name does not resolve, the connection or TLS
    handshake failed, or it timed out. Possibly transient."""
