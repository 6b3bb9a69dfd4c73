"""Encode cost per second of speech: ``ogg_opus`` before (libsndfile) and after (libopus via PyAV).

Real Piper speech, looped to ``--seconds``, at each Opus rate the job contract takes. The baseline
is the encoder ``ogg_opus`` used before, libsndfile through soundfile, run in this process on the
same samples; it lives only here. Costs are CPU time (``time.process_time``), the median of
``--reps`` interleaved runs, divided by the audio's length. ``--sweep`` also times libopus at
complexity 0..10 in both applications, with WB-PESQ against the source when the optional ``pesq``
package is importable (it is not a project dependency: ``pip install --target DIR pesq`` and put
DIR on PYTHONPATH). Run: ``python -m bench.audio_encode [--seconds 30] [--reps 5] [--sweep]``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

import av
import numpy as np
import soundfile as sf

from shared.audio.encode import encode, open_stream_encoder
from shared.audio.formats import AudioFormat
from shared.audio.pyav_encoder import AvSetup, PyAvEncoder
from shared.audio.resample import resample
from shared.audio.voice_note import opus_bitrate, opus_setup
from shared.engines.base import Pcm
from shared.engines.piper import PiperEngine

try:
    from pesq import pesq
except ImportError:  # optional: only the --sweep quality column needs it
    pesq = None

TEXT = (
    "Thanks for your message. Your order shipped this morning and should arrive on Thursday. "
    "If anything looks wrong, reply here and we will sort it out right away."
)
RATES = (8000, 16000, 24000, 48000)
STREAM_CHUNK_S = 0.2  # an engine-sized chunk


def libsndfile_ogg_opus(pcm: Pcm, rate: int) -> bytes:
    """The old ``ogg_opus`` whole-file path, kept here as the baseline."""
    buffer = io.BytesIO()
    with sf.SoundFile(
        buffer, mode="w", samplerate=rate, channels=1, format="OGG", subtype="OPUS"
    ) as out:
        out.write(pcm)
    return buffer.getvalue()


def streamed(fmt: AudioFormat, pcm: Pcm, rate: int) -> bytes:
    encoder = open_stream_encoder(fmt, in_rate=rate, out_rate=rate)
    step = round(STREAM_CHUNK_S * rate)
    parts = [encoder.feed(pcm[i : i + step]) for i in range(0, pcm.size, step)]
    return b"".join(parts) + encoder.close()


def cpu_ms(fn: Callable[[], bytes]) -> float:
    started = time.process_time()
    fn()
    return (time.process_time() - started) * 1000


def measure(cases: dict[str, Callable[[], bytes]], reps: int) -> dict[str, float]:
    """Median CPU ms of each case, the cases interleaved so host noise hits all of them alike."""
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(reps):
        for name, fn in cases.items():
            runs[name].append(cpu_ms(fn))
    return {name: statistics.median(values) for name, values in runs.items()}


def kbps(data: bytes, seconds: float) -> float:
    return len(data) * 8 / seconds / 1000


def wb_pesq(data: bytes, source: Pcm, rate: int) -> str:
    if pesq is None:
        return "  n/a"
    with av.open(io.BytesIO(data)) as container:
        frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)]
        decoded_rate = container.streams.audio[0].rate
    decoded = resample(np.concatenate(frames).astype(np.float32), decoded_rate, 16000)
    reference = resample(source, rate, 16000)
    n = min(decoded.size, reference.size)
    return f"{pesq(16000, reference[:n], decoded[:n], 'wb'):5.2f}"


def compare(speech: Pcm, speech_rate: int, reps: int) -> None:
    seconds = speech.size / speech_rate
    print(f"ogg_opus, {seconds:.1f} s of Piper speech, CPU ms per s of audio (median of {reps})")
    for rate in RATES:
        pcm = np.clip(resample(speech, speech_rate, rate), -1.0, 1.0)
        cases = {
            "before: libsndfile": lambda pcm=pcm, rate=rate: libsndfile_ogg_opus(pcm, rate),
            "after: PyAV whole": lambda pcm=pcm, rate=rate: encode(
                pcm, in_rate=rate, fmt=AudioFormat.OGG_OPUS, out_rate=rate
            ),
            "after: PyAV stream": lambda pcm=pcm, rate=rate: streamed(
                AudioFormat.OGG_OPUS, pcm, rate
            ),
        }
        costs = measure(cases, reps)
        before = costs["before: libsndfile"]
        for name, ms in costs.items():
            size = kbps(cases[name](), seconds)
            print(
                f"  {rate:5} Hz  {name:20} {ms / seconds:6.2f} ms/s  {size:5.1f} kbps"
                f"   before / this {before / ms:5.2f}x"
            )

    print(f"other PyAV formats at 24000 Hz (median of {reps})")
    pcm = np.clip(resample(speech, speech_rate, 24000), -1.0, 1.0)
    others = {
        fmt.value: lambda fmt=fmt: encode(pcm, in_rate=24000, fmt=fmt, out_rate=24000)
        for fmt in (AudioFormat.VOICE_NOTE, AudioFormat.AAC, AudioFormat.MP3)
    }
    for name, ms in measure(others, reps).items():
        print(f"  {name:10} {ms / seconds:6.2f} ms/s  {kbps(others[name](), seconds):5.1f} kbps")


def sweep(speech: Pcm, speech_rate: int, reps: int) -> None:
    rate = 24000
    pcm = np.clip(resample(speech, speech_rate, rate), -1.0, 1.0)
    seconds = pcm.size / rate
    print(f"libopus complexity sweep at {rate} Hz, {opus_bitrate(rate)} bps, WB-PESQ (max 4.64)")
    baseline = libsndfile_ogg_opus(pcm, rate)
    [before] = measure({"libsndfile": lambda: libsndfile_ogg_opus(pcm, rate)}, reps).values()
    print(
        f"  libsndfile (before)  {before / seconds:6.2f} ms/s  {kbps(baseline, seconds):5.1f} kbps"
        f"  pesq {wb_pesq(baseline, pcm, rate)}"
    )
    for application in ("audio", "voip"):
        for complexity in range(11):
            setup = opus_setup("sweep", opus_bitrate(rate), application, complexity=complexity)

            def run(setup: AvSetup = setup) -> bytes:
                encoder = PyAvEncoder(setup, rate)
                return encoder.encode(pcm) + encoder.close()

            [ms] = measure({"run": run}, reps).values()
            data = run()
            print(
                f"  {application:5} complexity {complexity:2}  {ms / seconds:6.2f} ms/s"
                f"  {kbps(data, seconds):5.1f} kbps  pesq {wb_pesq(data, pcm, rate)}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="speech looped to this length")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--sweep", action="store_true", help="also sweep libopus complexity 0..10")
    args = parser.parse_args()

    piper = PiperEngine.load()
    voice = piper.voice(piper.default_voice)
    phrase = piper.synthesize(TEXT, voice=voice, language="en", speed=1.0)
    samples = round(args.seconds * piper.sample_rate)
    speech = np.tile(phrase, -(-samples // phrase.size))[:samples]
    compare(speech, piper.sample_rate, args.reps)
    if args.sweep:
        sweep(speech, piper.sample_rate, args.reps)


if __name__ == "__main__":
    main()
