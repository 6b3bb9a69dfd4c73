"""Fetch the XTTS-v2 weights into a fixed folder, for an image build or a Modal Volume.

coqui-tts's ModelManager puts Hugging Face models in the Hugging Face cache, under a path that
names the revision, and leaves the folder it reports empty; a worker needs a folder it can be
pointed at (``TTS_XTTS_MODEL_DIR``). So the files coqui's own registry lists for xtts_v2 are
fetched straight into ``target``. Also a script, so the Dockerfile can run it before the code
is copied (the weights layer then survives code changes):
``python shared/engines/xtts_weights.py /models/xtts-v2 --accept-cpml``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

CPML_REFUSAL = (
    "the XTTS-v2 weights are under the Coqui Public Model License (non-commercial use only: "
    "https://tts-hub.github.io/cpml); accept it with --accept-cpml to download them"
)
# coqui-tts's registry name for the model, and the files a checkpoint folder needs (as in
# xtts.py; repeated because the Dockerfile runs this file alone, before the code is copied).
XTTS_V2 = ("tts_models", "multilingual", "multi-dataset", "xtts_v2")
NEEDED = ("config.json", "model.pth", "vocab.json")


def download_xtts_v2(target: Path, *, accept_cpml: bool) -> Path:
    """``target`` holding the XTTS-v2 checkpoint (fetched unless already complete)."""
    if not accept_cpml:
        raise PermissionError(CPML_REFUSAL)
    if all((target / name).is_file() for name in NEEDED):
        return target
    from huggingface_hub import snapshot_download
    from TTS.utils.manage import ModelManager

    kind, language, dataset, name = XTTS_V2
    entry = ModelManager().models_dict[kind][language][dataset][name]
    snapshot_download(entry["repo_id"], local_dir=target, ignore_patterns=entry.get("ignore"))
    missing = [name for name in NEEDED if not (target / name).is_file()]
    if missing:
        raise RuntimeError(f"the download left out {', '.join(missing)} in {target}")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", type=Path)
    parser.add_argument("--accept-cpml", action="store_true")
    args = parser.parse_args()
    print(download_xtts_v2(args.target, accept_cpml=args.accept_cpml))


if __name__ == "__main__":
    main()
