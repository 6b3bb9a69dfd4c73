"""A random-weight XTTS-v2 checkpoint made at test time: the real coqui-tts code path, offline.

No XTTS weights can be downloaded here, and coqui-tts ships no vocab. This writes the four files a
real model directory has (config.json, model.pth, vocab.json, speakers_xtts.pth) with the real
file formats, so ``XttsEngine.load`` cannot tell them apart from the published model except by
what the audio sounds like. Seeded: the same call writes the same weights.
"""

# ruff: noqa: RUF001  (sample sentences in 17 languages use their own letters and punctuation)
from __future__ import annotations

from pathlib import Path

LANGUAGES: tuple[str, ...] = (
    "en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn", "hu", "ko",
    "ja", "hi",
)  # fmt: skip
SPEAKERS: tuple[str, ...] = ("Test Speaker A", "Test Speaker B")
SPECIAL_TOKENS: tuple[str, ...] = (
    "[STOP]",
    "[UNK]",
    "[SPACE]",
    "[START]",
    *(f"[{lang}]" for lang in LANGUAGES),
)
# The published XTTS-v2 vocab has 6681 entries; BPE training stops earlier if it runs out of merges.
VOCAB_SIZE = 6681
SEED = 1234
# How the test suite loads it: the checkpoint never stops, so every segment is exactly this many
# GPT tokens (~1.1 s of audio); streaming in chunks of 8 tokens gives 3 chunks per segment.
XTTS_TEST_MAX_AUDIO_TOKENS = 24
XTTS_TEST_STREAM_CHUNK_TOKENS = 8

# A couple of sentences per language, run through coqui's own text preprocessing (romanization for
# ja/ko/zh, number expansion, lowercasing) so the vocab learns what the tokenizer really feeds it.
_SAMPLES: dict[str, str] = {
    "en": "Hello, how are you today? The quick brown fox jumps over the lazy dog. It's $20.",
    "es": "Hola, ¿cómo estás? El veloz murciélago hindú comía feliz cardillo y kiwi. Niño 12.",
    "fr": "Bonjour, ça va ? Le cœur déçu mais l'âme plutôt naïve, Louÿs rêva de crapaüter.",
    "de": "Guten Tag! Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. 3 Uhr.",
    "it": "Ciao, come stai? Quel vituperabile xenofobo zelante assaggia il whisky: perché!",
    "pt": "Olá, tudo bem? À noite, vovô Kowalsky vê o ímã cair no pé do pinguim queixoso e põe.",
    "pl": "Dzień dobry! Pchnąć w tę łódź jeża lub ośm skrzyń fig. Zażółć gęślą jaźń.",
    "tr": "Merhaba, nasılsın? Pijamalı hasta yağız şoföre çabucak güvendi. İstanbul, Ölçü, Ümit.",
    "ru": "Привет, как дела? Съешь же ещё этих мягких французских булок да выпей чаю. Ёж 5.",
    "nl": "Hallo, hoe gaat het? Pa's wijze lynx bezag vroom het fikse aquaduct. Één, twee.",
    "cs": "Dobrý den! Příliš žluťoučký kůň úpěl ďábelské ódy. Čeština, řeka, ů.",
    "ar": "مرحبا، كيف حالك؟ نص حكيم له سر قاطع وذو شأن عظيم مكتوب على ثوب أخضر ومغلف بجلد أزرق.",
    "zh": "你好，世界。今天天气很好，我们一起去公园散步吧！我有3本书。",
    "hu": "Jó napot! Árvíztűrő tükörfúrógép. Öt szép szűzlány őrült írót nyúz.",
    "ko": "안녕하세요. 오늘 날씨가 정말 좋네요. 다람쥐 헌 쳇바퀴에 타고파.",
    "ja": "こんにちは。今日はいい天気ですね。東京都に行きます。カタカナも漢字も読みます。",
    "hi": "नमस्ते, आप कैसे हैं? ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले।",
}

# Characters the preprocessed text of the 17 languages can contain, so none of them is [UNK].
_ALPHABET_RANGES: tuple[tuple[int, int], ...] = (
    (0x0021, 0x007E),  # ASCII
    (0x00C0, 0x017F),  # Latin-1 supplement letters, Latin Extended-A
    (0x0400, 0x04FF),  # Cyrillic
    (0x0600, 0x06FF),  # Arabic
    (0x0900, 0x097F),  # Devanagari
)


def _tiny_args() -> dict[str, int]:
    # 2 x 256 is the smallest GPT that keeps XTTS's structure (perceiver resampler, 32 latents).
    return {
        "gpt_layers": 2,
        "gpt_n_model_channels": 256,
        "gpt_n_heads": 4,
        "decoder_input_dim": 256,
    }


def _full_args() -> dict[str, int]:
    # The published XTTS-v2 architecture: same compute per token as the real model.
    return {
        "gpt_layers": 30,
        "gpt_n_model_channels": 1024,
        "gpt_n_heads": 16,
        "decoder_input_dim": 1024,
    }


def _pinyin_syllables() -> list[str]:
    """Every tone-numbered syllable of the 6,763 GB2312 hanzi: what XTTS turns Chinese into."""
    import pypinyin

    chars = []
    for high in range(0xB0, 0xF8):
        for low in range(0xA1, 0xFF):
            try:
                chars.append(bytes((high, low)).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    syllables = pypinyin.pinyin(
        "".join(chars), style=pypinyin.Style.TONE3, heteronym=False, neutral_tone_with_five=True
    )
    return sorted({entry[0] for entry in syllables if entry[0].isascii()})


def _corpus() -> list[str]:
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    preprocess = VoiceBpeTokenizer().preprocess_text
    lines = [preprocess(text, lang) for lang, text in _SAMPLES.items()]
    # Whole syllables, one per word: BPE learns each as one token and never merges across a tone
    # digit, so an 82-character Chinese segment stays far below XTTS's 400-token assertion.
    lines.extend(" ".join(_pinyin_syllables()) for _ in range(3))
    return lines


def build_vocab(path: Path) -> None:
    """Train a byte-pair vocab in XTTS's format (Whitespace pre-tokenizer, its special tokens)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    alphabet = [chr(code) for start, end in _ALPHABET_RANGES for code in range(start, end + 1)]
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer.save(str(path))


def build_tiny_xtts_checkpoint(directory: Path, *, full_size: bool = False) -> Path:
    """Write a random-weight XTTS-v2 model directory and return it.

    ``full_size=False``: 2 GPT layers x 256 channels (~29 M parameters, ~120 MB), for CPU tests.
    ``full_size=True``: the real 30 x 1024 architecture (~450 M parameters, ~1.8 GB), for GPU
    benchmarks: its timings are those of real XTTS-v2, its audio is noise.
    """
    import torch
    from tokenizers import Tokenizer
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    directory.mkdir(parents=True, exist_ok=True)
    vocab_path = directory / "vocab.json"
    build_vocab(vocab_path)
    vocab = Tokenizer.from_file(str(vocab_path))

    config = XttsConfig()
    config.languages = list(LANGUAGES)
    # Sampling defaults of the published config.json; the engine pins its own anyway.
    config.temperature, config.repetition_penalty = 0.75, 5.0
    args = config.model_args
    for key, value in (_full_args() if full_size else _tiny_args()).items():
        setattr(args, key, value)
    # As in the published config: XTTS-v2 has the perceiver resampler and 1026 audio codes.
    args.gpt_use_perceiver_resampler = True
    args.gpt_num_audio_tokens, args.gpt_start_audio_token, args.gpt_stop_audio_token = (
        1026,
        1024,
        1025,
    )
    args.gpt_number_text_tokens = max(vocab.get_vocab().values()) + 1
    args.gpt_start_text_token = vocab.token_to_id("[START]")
    args.gpt_stop_text_token = vocab.token_to_id("[STOP]")
    config.save_json(str(directory / "config.json"))

    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(SEED)
        model = Xtts(config)
        with torch.no_grad():
            # Never emit the stop token, so every segment runs to the engine's token cap: audio
            # lengths are then exact and tests can assert them (random weights rarely stop anyway).
            model.gpt.mel_head.bias[args.gpt_stop_audio_token] = -1e4
        torch.save({"model": model.state_dict()}, directory / "model.pth")
        dim = args.gpt_n_model_channels
        speakers = {
            name: {
                # The perceiver resampler's 32 conditioning latents, and HiFi-GAN's d-vector.
                "gpt_cond_latent": torch.randn(1, 32, dim),
                "speaker_embedding": torch.randn(1, args.d_vector_dim, 1) * 0.1,
            }
            for name in SPEAKERS
        }
        torch.save(speakers, directory / "speakers_xtts.pth")
    finally:
        torch.random.set_rng_state(generator_state)
    return directory
