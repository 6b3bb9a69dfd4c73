"""One segment's GPT latents, a step at a time: the latent source of the XTTS stream loop.

Each step yields the hidden state (after the final norm) that predicted the step's audio token:
what coqui's ``inference_stream`` feeds HiFi-GAN, and what ``inference`` recomputes with a second
GPT pass. GPT is causal, so a latent never changes once yielded. The source is this one function
so that a batched GPT (several requests' steps run together) can replace it with a generator of
the same shape.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from shared.errors import InternalError

if TYPE_CHECKING:
    import torch
    from TTS.tts.models.xtts import Xtts


def text_tokens(model: Xtts, text: str, language: str) -> torch.Tensor:
    """``text`` as XTTS's GPT reads it ([1, n] on the model's device), as coqui tokenizes it."""
    import torch

    tokens = model.tokenizer.encode(text.strip().lower(), lang=language.split("-")[0])
    return torch.IntTensor(tokens).unsqueeze(0).to(model.device)


def gpt_latents(
    model: Xtts,
    tokens: torch.Tensor,
    gpt_cond_latent: torch.Tensor,
    sampling: Mapping[str, Any],
) -> Iterator[torch.Tensor]:
    """The latents ([1, C]) of one segment, one per generated audio token, stop token included.

    ``sampling``: temperature, top_k, top_p, repetition_penalty, length_penalty. Runs coqui's own
    generator, which keeps this segment's prompt in the model (``store_prefix_emb``): no other
    segment may step the model until this one is done. Call each ``next`` under
    ``torch.inference_mode``, with the model lock held.
    """
    import torch

    with torch.inference_mode():
        prompt = model.gpt.compute_embeddings(gpt_cond_latent, tokens)
        steps = model.gpt.get_generator(
            fake_inputs=prompt,
            top_k=sampling["top_k"],
            top_p=sampling["top_p"],
            temperature=sampling["temperature"],
            do_sample=True,
            num_beams=1,
            num_return_sequences=1,
            length_penalty=float(sampling["length_penalty"]),
            repetition_penalty=float(sampling["repetition_penalty"]),
            output_attentions=False,
            output_hidden_states=True,
            return_dict_in_generate=True,
        )
    try:
        for _token, latent in steps:
            yield latent
    finally:
        steps.close()


class BatchedLatents:
    """Latent sources of the same shape as ``gpt_latents`` that share one ``BatchedGpt``.

    Whichever source finds its own queue empty runs one batched step, and every active
    request's latent from it goes to that request's queue: concurrent streams advance together,
    one GPT forward per step for all of them, in whatever order their readers pull. Not
    thread-safe: call each ``next`` with the model lock held (the engine thread does).
    """

    def __init__(self, model: Xtts, *, device: str, max_batch: int) -> None:
        from shared.engines.xtts_batch import BatchedGpt

        self.batch = BatchedGpt(model.gpt, device=device, max_batch=max_batch)
        self._max_new = int(model.gpt.max_gen_mel_tokens)
        self._queues: dict[int, deque[tuple[torch.Tensor, bool]]] = {}

    def latents(
        self, tokens: torch.Tensor, gpt_cond_latent: torch.Tensor, sampling: Mapping[str, Any]
    ) -> Iterator[torch.Tensor]:
        """One segment's latents ([1, C]), stop token included, as ``gpt_latents`` yields them.

        Joins at the first ``next`` (stepping the others first while the batch is full) and
        leaves when closed, so a cancelled stream frees its row for the next one.
        """
        from shared.engines.xtts_batch import GptRequest
        from shared.engines.xtts_batch_sampling import SamplingSettings

        request = GptRequest(
            text_tokens=[int(token) for token in tokens.reshape(-1).tolist()],
            cond_latent=gpt_cond_latent,
            max_new_tokens=self._max_new,
            sampling=SamplingSettings.from_kwargs(sampling),
        )
        while not self.batch.free:
            self._step()
        slot = self.batch.join(request)
        queue: deque[tuple[torch.Tensor, bool]] = deque()
        self._queues[slot] = queue
        try:
            while True:
                while not queue:
                    if not self._step():  # never, while this slot is active: fail, not spin
                        raise InternalError("the GPT batch lost a stream's row")
                latent, stopped = queue.popleft()
                yield latent
                if stopped:
                    return
        finally:
            del self._queues[slot]
            self.batch.leave(slot)

    def _step(self) -> bool:
        """One batched step, each latent to its request's queue; False: nothing was active."""
        outs = self.batch.step()
        for slot, out in outs.items():
            self._queues[slot].append((out.latent, out.stopped))
        return bool(outs)
