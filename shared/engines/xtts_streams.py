"""XTTS stream chunking, and concurrent streams advanced as one batch: ``BatchedStreams``.

A stream's latents wait in ``SegmentChunks`` until its next chunk is due: the first chunk small
(early first audio) plus the decoder's lookahead, later ones doubling up to the chunk size.

``BatchedStreams`` runs every active stream's GPT step as one forward (``BatchedGpt``). A chunk
is decoded when its own reader needs it, together with the other streams' chunks that are due
by then (``BatchedVocoder``: one read of each decoder layer's weights for all of them), and
with riders at least half-way to their next chunk, so that streams that joined steps apart line
up and fall due together from then on. A caller waiting for its first audio is decoded alone:
on a device where decode is compute-bound (a CPU), the others' decode would only delay it.
Chunking never changes a stream's audio, only when it arrives.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.engines.xtts_vocoder import BatchedVocoder, VocoderRow
from shared.errors import InternalError

if TYPE_CHECKING:
    import torch
    from TTS.tts.models.xtts import Xtts


def chunk_sizes(first: int, most: int) -> Iterator[int]:
    """Tokens per stream chunk: ``first``, then doubling, then ``most`` from there on."""
    size = min(first, most)
    while True:
        yield size
        size = min(size * 2, most)


class SegmentChunks:
    """One segment's latents waiting for its decoder: ``due`` when the next chunk is full.

    The first chunk also waits for the decoder's ``lookahead``, so it holds the audio it was
    sized for rather than a sliver of it.
    """

    def __init__(self, row: VocoderRow, *, first: int, most: int, lookahead: int) -> None:
        self.row = row
        self._sizes = chunk_sizes(first, most)
        self._size = next(self._sizes) + lookahead
        self._pending: list[torch.Tensor] = []
        self._empty: torch.Tensor | None = None
        self.started = False  # its first chunk was decoded

    def add(self, latent: torch.Tensor) -> None:
        """One latent ([1, C]) from GPT."""
        self._pending.append(latent)

    @property
    def due(self) -> bool:
        return len(self._pending) >= self._size

    @property
    def half_due(self) -> bool:
        """Past its first chunk and at least half-way to the next: worth decoding early."""
        return self.started and 2 * len(self._pending) >= self._size

    def take(self, final: bool) -> tuple[VocoderRow, torch.Tensor, bool]:
        """The pending latents as one ``BatchedVocoder.push`` entry ([1, n, C])."""
        import torch

        if self._pending:
            latents = torch.cat(self._pending)[None]
            self._empty = latents[:, :0]
        elif self._empty is not None:  # the last chunk ended just before the stop
            latents = self._empty
        else:
            raise InternalError("a segment ended before GPT made a single latent")
        self._pending = []
        self._size = next(self._sizes)
        self.started = True
        return self.row, latents, final


@dataclass(slots=True, eq=False)  # compared by identity
class _Stream:
    chunks: SegmentChunks
    audio: deque[torch.Tensor] = field(default_factory=deque)
    stopped: bool = False
    finished: bool = False
    # A shared step or decode that failed lost this stream's latents or audio too: it fails
    # with the same error (after the audio it already has) rather than play on with a gap.
    error: Exception | None = None


class BatchedStreams:
    """Up to ``max_batch`` concurrent segments' streams over one model, advanced together.

    A stream that finds no audio of its own waiting decodes its chunk when due (with others,
    at most ``decode_batch`` streams per decoder call: on a CPU wider batches spill out of
    cache), or else runs one batched GPT step for every stream; decoded audio goes to each
    stream's own queue, so streams advance in whatever order their readers pull. Not
    thread-safe: call each ``next`` with the model lock held (the engine thread does), under
    ``torch.inference_mode``.
    """

    def __init__(
        self,
        model: Xtts,
        *,
        device: str,
        max_batch: int,
        decode_batch: int,
        sampling: Mapping[str, Any],
        first_chunk_tokens: int,
        chunk_tokens: int,
        lookahead: int,
    ) -> None:
        from shared.engines.xtts_batch import BatchedGpt
        from shared.engines.xtts_batch_sampling import SamplingSettings

        # The engine's sampling kwargs, checked and converted once for every request.
        self.sampling = SamplingSettings.from_kwargs(sampling)
        self.batch = BatchedGpt(model.gpt, device=device, max_batch=max_batch)
        self.vocoder = BatchedVocoder(model.hifigan_decoder)
        self._max_new = int(model.gpt.max_gen_mel_tokens)
        self._decode_batch = decode_batch
        self._chunking = {"first": first_chunk_tokens, "most": chunk_tokens, "lookahead": lookahead}
        self._streams: dict[int, _Stream] = {}

    def stream(
        self,
        tokens: torch.Tensor,
        gpt_cond_latent: torch.Tensor,
        speaker_embedding: torch.Tensor,
        *,
        length_scale: float,
    ) -> Iterator[torch.Tensor]:
        """One segment's audio (1-D, at the decoder's rate) in chunks, as the stream loop of
        a lone request would decode it.

        Joins at the first ``next`` (stepping the others first while the batch is full) and
        leaves when closed, so a cancelled stream frees its row for the next one.
        """
        from shared.engines.xtts_batch import GptRequest

        request = GptRequest(
            text_tokens=[int(token) for token in tokens.reshape(-1).tolist()],
            cond_latent=gpt_cond_latent,
            max_new_tokens=self._max_new,
            sampling=self.sampling,
        )
        # Everything that can fail before the row is taken: a join is always registered.
        row = self.vocoder.open(speaker_embedding, length_scale=length_scale)
        stream = _Stream(SegmentChunks(row, **self._chunking))
        while not self.batch.free:
            self._step()
        slot = self.batch.join(request)
        self._streams[slot] = stream
        try:
            while True:
                if stream.audio:
                    yield stream.audio.popleft()
                elif stream.error is not None:
                    raise stream.error
                elif stream.finished:
                    return
                elif _due(stream):
                    self._decode(self._group(stream))
                elif not self._step():  # never, while this slot is active: fail, not spin
                    raise InternalError("the GPT batch lost a stream's row")
        finally:
            del self._streams[slot]
            self.batch.leave(slot)

    def _step(self) -> bool:
        """One batched GPT step, each latent to its stream; False: nothing was active."""
        try:
            outs = self.batch.step()
        except Exception as exc:
            _fail([stream for stream in self._streams.values() if not stream.finished], exc)
            raise
        for slot, out in outs.items():
            stream = self._streams[slot]
            stream.chunks.add(out.latent)
            stream.stopped = out.stopped
        return bool(outs)

    def _group(self, stream: _Stream) -> list[_Stream]:
        """``stream``, whose chunk is due, and up to ``decode_batch`` - 1 others to decode with
        it: those due too (their readers would decode them next), then riders at least
        half-way to their next chunk, so that streams that joined steps apart line up. Alone
        while its caller waits for first audio: the others' decode would delay it."""
        if not stream.chunks.started:
            return [stream]
        others = [other for other in self._streams.values() if other is not stream]
        live = [other for other in others if not other.finished and other.error is None]
        due = [other for other in live if _due(other)]
        riders = [other for other in live if not _due(other) and other.chunks.half_due]
        return [stream, *due, *riders][: self._decode_batch]

    def _decode(self, streams: list[_Stream]) -> None:
        pushes = [stream.chunks.take(stream.stopped) for stream in streams]
        try:
            decoded = self.vocoder.push(pushes)
        except Exception as exc:
            _fail(streams, exc)
            raise
        for stream, pcm in zip(streams, decoded, strict=True):
            stream.finished = stream.stopped
            if pcm.numel():
                stream.audio.append(pcm)


def _due(stream: _Stream) -> bool:
    return stream.stopped or stream.chunks.due


def _fail(streams: list[_Stream], error: Exception) -> None:
    for stream in streams:
        stream.error = error
