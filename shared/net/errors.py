"""How an outbound request to a user's URL fails, as user-visible ``invalid_input`` (the URL is
the user's input). Messages never repeat the URL: its path or query may be a secret (n8n and
Zapier webhook URLs are bearer tokens, S3 presigned URLs carry a signature); the host may appear.
"""

from __future__ import annotations

from shared.errors import InvalidInput


class DestinationRefused(InvalidInput):
    """The policy will not send there: not an http(s) URL (or plain http where only https is
    allowed), or a host with a non-public address. Final: trying again cannot help."""


class SendFailed(InvalidInput):
    """The destination could not be reached or did not answer with what was asked for: its name
    does not resolve, the connection or TLS handshake failed, it timed out, it answered an error
    status, or its redirects went wrong. Possibly transient."""


class ResponseTooLarge(SendFailed):
    """The response body is over the caller's bound, as declared or as it streamed in: a kind
    of ``SendFailed`` a caller may report as its own size limit."""
