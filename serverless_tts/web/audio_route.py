"""The signed local audio route: what a local storage URL points at.

Shared by the web app and the audio-only server that runs beside RunPod's local API; each puts
its store in ``app.state.storage``.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

from shared.errors import NotFound
from shared.storage.local import AUDIO_ROUTE, LocalAudioStore, UrlRefused

router = APIRouter()


@router.get(AUDIO_ROUTE + "{key:path}")
async def audio(key: str, request: Request, expires: str = "", sig: str = "") -> FileResponse:
    storage = request.app.state.storage
    if not isinstance(storage, LocalAudioStore):
        raise HTTPException(404, detail="audio is served by the configured object store")
    try:
        path = storage.open_signed(key, expires, sig)
    except UrlRefused as exc:
        raise HTTPException(403, detail=str(exc)) from None
    except NotFound as exc:
        raise HTTPException(404, detail=exc.message) from None
    return FileResponse(path, media_type=storage.content_type(key))
