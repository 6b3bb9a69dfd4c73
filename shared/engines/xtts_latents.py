"""One segment's GPT latents, a step at a time: the latent source of the XTTS stream loop.

Each step yields the hidden state (after the final norm) that predicted the step's audio token:
what coqui's ``inference_stream`` feeds HiFi-GAN, and what ``inference`` recomputes with a second
GPT pass. GPT is causal, so a latent never changes once yielded. Concurrent streams get theirs
from a batched GPT instead (``xtts_streams.BatchedStreams``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

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
