"""Ship v0.4's recipe trained for 12000 steps as pumit-ref-tokenizer-v0.6.0 (the default ``pumit-ref-tokenizer``).

    python experiments/package_tokenizer_v6.py [--run runs/ref/tok6] [--eval runs/ref/recon-eval-tok6] \\
        [--previous-eval runs/ref/recon-eval-tok5]

The card, meta and command line are v0.5.0's (:func:`package_tokenizer_v5.cli`), compared with v0.5.0's evaluation. v0.5.0
leaves the package (its folder is in the git history); v0.3.0 stays for the MIM chain trained against it.
"""
from __future__ import annotations

from package_tokenizer_v5 import Release, cli

RELEASE = Release(
    version="0.6.0", config="tokenizer_v6.yaml", section="tokenizer v0.5", longer="instead of v0.5.0's 6000",
    previous="v0.5.0", previous_neck_ssim="0.98", minutes="60",
    why="the same recipe again twice as long,\nslightly sharper than v0.5.0 on every held-out group (v0.4.0 at 3000 "
        "steps had per-window offsets on 2D CT slices; gone since v0.5.0).")


def main() -> None:
    cli(RELEASE, "runs/ref/tok6", "runs/ref/recon-eval-tok6", "runs/ref/recon-eval-tok5")


if __name__ == "__main__":
    main()
