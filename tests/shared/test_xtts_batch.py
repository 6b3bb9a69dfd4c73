"""BatchedGpt on the random-weight XTTS-v2 checkpoint: coqui-tts's real GPT, batched.

Each request's tokens and latents must not depend on what else shares its batch. Alone means
the same class with a batch of one; coqui's own ``GPT.generate`` and whole-segment latent pass
(``gpt(..., return_latent=True)``, what ``Xtts.inference`` feeds HiFi-GAN) are the reference for
that. The tiny checkpoint's greedy tokens barely depend on the prompt, so the tests that need
requests to differ use seeded sampling, where each request draws from its own generator.
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from bench import xtts_batch as xtts_batch_bench
from bench.xtts_batch import coqui_generate
from shared.engines.xtts import SAMPLING
from shared.engines.xtts_batch import PROMPT_PLACEHOLDER_TOKEN, BatchedGpt, GptRequest, StepOut
from shared.engines.xtts_batch_sampling import RowSettings, SamplingSettings, warp
from shared.errors import InternalError, InvalidInput
from tests.xtts_checkpoint import SPEAKERS, XTTS_TEST_MAX_AUDIO_TOKENS

TEXTS = (
    "hi.",
    "the quick brown fox jumps over the lazy dog.",
    "serverless workers keep the model warm between calls, so a caller hears an answer.",
    "short one.",
)
GREEDY = SamplingSettings(top_k=1, repetition_penalty=5.0)
# Different settings per request, all sampling: the rows' warpers and draws must not mix.
SAMPLED = (
    SamplingSettings(),
    SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0),
    SamplingSettings(temperature=0.5, top_k=20, top_p=0.6, repetition_penalty=2.0),
    SamplingSettings(temperature=1.3, top_k=100, top_p=0.95, repetition_penalty=10.0),
)
# Float error of a batched forward against a lone one or coqui's Hugging Face pass is ~1e-6;
# latents of different requests differ by ~1e-2.
LATENT_ATOL = 1e-5


@pytest.fixture(scope="module")
def xtts(tiny_xtts_dir: Path) -> Any:
    """coqui's Xtts loaded by its own code, capped as the engine caps it in tests."""
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    config = XttsConfig()
    config.load_json(str(tiny_xtts_dir / "config.json"))
    model = Xtts(config)
    model.load_checkpoint(config, checkpoint_dir=str(tiny_xtts_dir), eval=True)
    model.eval()
    model.gpt.max_gen_mel_tokens = XTTS_TEST_MAX_AUDIO_TOKENS
    return model


def _request(
    xtts: Any,
    index: int,
    *,
    sampling: SamplingSettings = GREEDY,
    max_new_tokens: int = XTTS_TEST_MAX_AUDIO_TOKENS,
    seed: int | None = None,
) -> GptRequest:
    speaker = xtts.speaker_manager.speakers[SPEAKERS[index % len(SPEAKERS)]]
    return GptRequest(
        text_tokens=xtts.tokenizer.encode(TEXTS[index], lang="en"),
        cond_latent=speaker["gpt_cond_latent"],
        max_new_tokens=max_new_tokens,
        sampling=sampling,
        seed=seed,
    )


def _sampled(xtts: Any, index: int) -> GptRequest:
    return _request(xtts, index, sampling=SAMPLED[index], seed=100 + index)


def _alone(xtts: Any, request: GptRequest) -> list[StepOut]:
    batch = BatchedGpt(xtts.gpt, device="cpu", max_batch=1)
    slot = batch.join(request)
    outs = []
    while batch.active:
        outs.append(batch.step()[slot])
    return outs


def _together(xtts: Any, requests: Sequence[GptRequest]) -> list[list[StepOut]]:
    batch = BatchedGpt(xtts.gpt, device="cpu", max_batch=len(requests))
    slots = [batch.join(request) for request in requests]
    outs: dict[int, list[StepOut]] = {slot: [] for slot in slots}
    while batch.active:
        for slot, out in batch.step().items():
            outs[slot].append(out)
    return [outs[slot] for slot in slots]


def _tokens(outs: Sequence[StepOut]) -> list[int]:
    return [out.token for out in outs]


def _latents(outs: Sequence[StepOut]) -> torch.Tensor:
    return torch.cat([out.latent for out in outs])


def _coqui(gpt: Any, request: GptRequest) -> tuple[list[int], torch.Tensor]:
    """coqui's own decode of ``request`` and the latents its ``inference`` decodes audio from."""
    codes = coqui_generate(gpt, request)
    text = torch.IntTensor(list(request.text_tokens)).unsqueeze(0)
    with torch.inference_mode():
        latents = gpt(
            text,
            torch.tensor([text.shape[-1]]),
            codes,
            torch.tensor([codes.shape[-1] * gpt.code_stride_len]),
            cond_latents=request.cond_latent,
            return_attentions=False,
            return_latent=True,
        )
    return codes[0].tolist(), latents[0]


def test_four_requests_together_match_each_alone_and_coquis_own_decode(xtts: Any) -> None:
    requests = [_request(xtts, i) for i in range(4)]
    assert len({len(r.text_tokens) for r in requests}) == 4, "text lengths must differ"
    together = _together(xtts, requests)
    for request, batched in zip(requests, together, strict=True):
        alone = _alone(xtts, request)
        tokens, latents = _coqui(xtts.gpt, request)
        assert len(tokens) == XTTS_TEST_MAX_AUDIO_TOKENS
        assert _tokens(batched) == _tokens(alone) == tokens
        torch.testing.assert_close(_latents(batched), _latents(alone), atol=LATENT_ATOL, rtol=0)
        torch.testing.assert_close(_latents(batched), latents, atol=LATENT_ATOL, rtol=0)
    # The latents carry each request's own prompt: comparing them tells requests apart.
    first, second = _latents(together[0]), _latents(together[1])
    assert (first - second).abs().max() > 100 * LATENT_ATOL


def test_seeded_sampling_gives_each_request_its_own_tokens_in_any_batch(xtts: Any) -> None:
    requests = [_sampled(xtts, i) for i in range(4)]
    together = _together(xtts, requests)
    for request, batched in zip(requests, together, strict=True):
        alone = _alone(xtts, request)
        assert _tokens(batched) == _tokens(alone)
        torch.testing.assert_close(_latents(batched), _latents(alone), atol=LATENT_ATOL, rtol=0)
    assert len({tuple(_tokens(outs)) for outs in together}) == 4


def test_join_mid_batch_and_cancel_mid_batch_leave_the_others_intact(xtts: Any) -> None:
    first, second, third, late = (_sampled(xtts, i) for i in range(4))
    batch = BatchedGpt(xtts.gpt, device="cpu", max_batch=3)
    slots = [batch.join(first), batch.join(second), batch.join(third)]
    outs: dict[int, list[StepOut]] = {slot: [] for slot in slots}

    def run(steps: int) -> None:
        for _ in range(steps):
            for slot, out in batch.step().items():
                outs[slot].append(out)

    run(5)
    batch.leave(slots[0])  # cancelled: the last row moves into its place
    assert batch.active == 2
    run(3)
    late_slot = batch.join(late)  # takes a row a cancelled request's cache still fills
    outs[late_slot] = []
    assert late_slot not in slots
    while batch.active:
        run(1)

    assert len(outs[slots[0]]) == 5
    first_alone = _alone(xtts, first)
    assert _tokens(outs[slots[0]]) == _tokens(first_alone)[:5]
    for request, slot in ((second, slots[1]), (third, slots[2]), (late, late_slot)):
        alone = _alone(xtts, request)
        assert _tokens(outs[slot]) == _tokens(alone)
        torch.testing.assert_close(_latents(outs[slot]), _latents(alone), atol=LATENT_ATOL, rtol=0)


def test_each_request_stops_at_its_own_max_new_tokens(xtts: Any) -> None:
    caps = (3, 7, 1, 12)
    requests = [_request(xtts, i, max_new_tokens=cap) for i, cap in enumerate(caps)]
    batch = BatchedGpt(xtts.gpt, device="cpu", max_batch=4)
    slots = [batch.join(request) for request in requests]
    outs: dict[int, list[StepOut]] = {slot: [] for slot in slots}
    active = []
    while batch.active:
        for slot, out in batch.step().items():
            outs[slot].append(out)
        active.append(batch.active)
    assert [len(outs[slot]) for slot in slots] == list(caps)
    for slot in slots:
        assert [out.stopped for out in outs[slot]] == [False] * (len(outs[slot]) - 1) + [True]
    # A stopped request leaves by itself; leaving it again is harmless.
    assert active[:3] == [3, 3, 2]
    batch.leave(slots[0])
    assert batch.step() == {}
    full = _alone(xtts, _request(xtts, 3))
    assert _tokens(outs[slots[3]]) == _tokens(full)[:12]


def test_the_stop_token_ends_a_request_with_its_latent(xtts: Any) -> None:
    # The test checkpoint never emits the stop token (its bias is -1e4): a copy that always
    # does shows the stop as coqui's generate makes it, on every row at once.
    gpt = copy.deepcopy(xtts.gpt)
    with torch.no_grad():
        gpt.mel_head.bias[gpt.stop_audio_token] = 1e4
    requests = [_request(xtts, i) for i in range(3)]
    batch = BatchedGpt(gpt, device="cpu", max_batch=3)
    slots = [batch.join(request) for request in requests]
    outs = batch.step()
    assert batch.active == 0
    for request, slot in zip(requests, slots, strict=True):
        tokens, latents = _coqui(gpt, request)
        assert tokens == [gpt.stop_audio_token]
        assert outs[slot].token == gpt.stop_audio_token
        assert outs[slot].stopped
        torch.testing.assert_close(outs[slot].latent, latents, atol=LATENT_ATOL, rtol=0)


def test_warpers_match_transformers_processors_row_by_row() -> None:
    generator = torch.Generator().manual_seed(7)
    vocabulary = 1026
    settings = [
        *SAMPLED,
        SamplingSettings(top_k=1),
        SamplingSettings(top_k=5000, top_p=0.0),
        SamplingSettings(temperature=0.75, top_k=50, top_p=0.85, repetition_penalty=10.0),
    ]
    logits = torch.randn(len(settings), vocabulary, generator=generator) * 4
    history = torch.randint(0, vocabulary, (len(settings), 40), generator=generator)
    seen = torch.zeros(len(settings), vocabulary, dtype=torch.bool)
    seen.scatter_(1, history, True)
    rows = RowSettings.build(settings, vocabulary, torch.device("cpu"))
    warped = warp(logits, seen, rows)
    for index, setting in enumerate(settings):
        expected = _transformers_warp(setting)(
            history[index : index + 1], logits[index : index + 1]
        )
        torch.testing.assert_close(warped[index : index + 1], expected, atol=1e-6, rtol=0)


def _transformers_warp(setting: SamplingSettings) -> LogitsProcessorList:
    """What Hugging Face generate builds from these settings with do_sample=True."""
    processors = LogitsProcessorList()
    if setting.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(setting.repetition_penalty))
    if setting.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(setting.temperature))
    if setting.top_k != 0:
        processors.append(TopKLogitsWarper(setting.top_k))
    if setting.top_p < 1.0:
        processors.append(TopPLogitsWarper(setting.top_p))
    return processors


def test_repetition_penalty_counts_coquis_prompt_placeholders(xtts: Any) -> None:
    # coqui's input_ids hold token 1 for the prompt and the start token, and Hugging Face
    # penalizes them: a greedy request that would pick token 1 first must not, as in coqui.
    gpt = copy.deepcopy(xtts.gpt)
    with torch.no_grad():
        gpt.mel_head.bias[PROMPT_PLACEHOLDER_TOKEN] = 50.0
    for penalty in (1.0, 1e6):
        request = _request(xtts, 0, sampling=SamplingSettings(top_k=1, repetition_penalty=penalty))
        tokens, _ = _coqui(gpt, request)
        batch = BatchedGpt(gpt, device="cpu", max_batch=1)
        slot = batch.join(request)
        assert batch.step()[slot].token == tokens[0]
        assert (tokens[0] == PROMPT_PLACEHOLDER_TOKEN) == (penalty == 1.0)


def test_bad_requests_are_refused_before_taking_a_row(xtts: Any) -> None:
    batch = BatchedGpt(xtts.gpt, device="cpu", max_batch=1)
    good = _request(xtts, 0)
    for bad in (
        GptRequest(text_tokens=good.text_tokens, cond_latent=good.cond_latent, max_new_tokens=0),
        GptRequest(
            text_tokens=good.text_tokens,
            cond_latent=good.cond_latent,
            max_new_tokens=XTTS_TEST_MAX_AUDIO_TOKENS + 1,
        ),
        GptRequest(text_tokens=[], cond_latent=good.cond_latent, max_new_tokens=4),
        GptRequest(text_tokens=good.text_tokens, cond_latent=good.cond_latent[0], max_new_tokens=4),
    ):
        with pytest.raises(InvalidInput):
            batch.join(bad)
    assert batch.active == 0
    with pytest.raises(InvalidInput):
        SamplingSettings(top_p=1.5)
    batch.join(good)
    with pytest.raises(InternalError):
        batch.join(good)


def test_the_engines_sampling_kwargs_map_onto_the_batchs_settings() -> None:
    settings = SamplingSettings.from_kwargs(asdict(SAMPLING))
    assert (
        settings.temperature,
        settings.top_k,
        settings.top_p,
        settings.repetition_penalty,
    ) == (SAMPLING.temperature, SAMPLING.top_k, SAMPLING.top_p, SAMPLING.repetition_penalty)


def test_the_bench_runs_and_reports_every_batch_size(tiny_xtts_dir: Path) -> None:
    out = io.StringIO()
    argv = ["--xtts-dir", str(tiny_xtts_dir), "--device", "cpu", "--batches", "1,3"]
    with contextlib.redirect_stdout(out):
        xtts_batch_bench.main([*argv, "--tokens", "3", "--runs", "1"])
    rows = re.findall(r"^\| (\d+) \|(?: [\d.]+x? \|){8}$", out.getvalue(), re.M)
    assert rows == ["1", "3"]
