"""A new voice's reference bytes, from whichever source its job named: uploaded bytes, base64,
or a URL fetched under the outbound policy (https, public addresses only, bounded size and time).

Fetch failures become the reference's own codes: the URL is the tenant's input, and they need
to know whether to fix the URL (``reference_url_refused``), their server
(``reference_unreachable``) or the file (``reference_too_large``).
"""

from __future__ import annotations

import base64
import binascii

from shared.errors import InvalidInput, ReferenceTooLarge, ReferenceUnreachable, ReferenceUrlRefused
from shared.jobs import MAX_REFERENCE_BYTES, VoicesCreateJob
from shared.net.errors import DestinationRefused, ResponseTooLarge, SendFailed
from shared.net.fetch import fetch_bounded
from shared.net.resolve import Resolver, system_resolver


def reference_bytes(
    job: VoicesCreateJob,
    *,
    fetch_timeout_s: float,
    allow_http: bool,
    resolve: Resolver = system_resolver,
) -> bytes:
    """The reference audio ``job`` names, at most ``MAX_REFERENCE_BYTES`` (not yet decoded)."""
    if job.audio is not None:
        return job.audio
    if job.audio_base64 is not None:
        try:
            return base64.b64decode(job.audio_base64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(
                "audio_base64 is not valid base64 (standard alphabet, padded, no line breaks)",
                field="audio_base64",
            ) from None
    assert job.audio_url is not None  # the contract asks for exactly one source
    try:
        return fetch_bounded(
            job.audio_url,
            max_bytes=MAX_REFERENCE_BYTES,
            timeout_s=fetch_timeout_s,
            allow_http=allow_http,
            resolve=resolve,
        ).body
    except ResponseTooLarge as err:
        raise ReferenceTooLarge(
            f"{err.message}; a reference may have at most 10 MB", field="audio_url"
        ) from err
    except DestinationRefused as err:
        raise ReferenceUrlRefused(err.message, field="audio_url") from err
    except SendFailed as err:
        raise ReferenceUnreachable(err.message, field="audio_url") from err
