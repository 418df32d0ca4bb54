"""Build (or find) a token cache without training, e.g. to carry it to an offline GPU machine.

    python -m mambalab.data.prepare data=text tokenizer=gpt_neox \
        tokenizer.path=../shared/data/gpt-neox-20b/tokenizer.json \
        'data.train_files="../shared/data/wikipedia-2015-sample/part-00[01].jsonl.gz"' \
        data.validation_files=../shared/data/wikitext-103/wiki.valid.raw \
        data.cache_dir=outputs/token_cache

(Hydra's override grammar needs a glob with brackets in double quotes, or a list: data.train_files=[a,b].)

Takes the same `data=` / `tokenizer=` groups and overrides as `python -m mambalab.train` (defaults:
data=wikitext103 tokenizer=gpt_neox) and prints the cache folder, its size and each split's counts.
A training run given the same data settings and cache_dir then reuses the folder as it is; on a
machine without the source files, `data=cached data.path=<folder>` with
`tokenizer.path=<folder>/tokenizer` trains from the folder alone (it holds the tokenizer too).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

CONF = Path(__file__).resolve().parents[2] / "conf"


def main(argv: list[str] | None = None) -> dict:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return {}
    groups = {"data": "wikitext103", "tokenizer": "gpt_neox"}
    overrides = []
    for arg in args:
        key, _, value = arg.partition("=")
        if key in groups:
            groups[key] = value
        else:
            overrides.append(arg)
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(overrides=[f"+{g}={v}" for g, v in groups.items()] + overrides)
    data = instantiate(cfg.data, tokenizer=instantiate(cfg.tokenizer))
    start = time.perf_counter()
    cache = data.prepare()
    seconds = time.perf_counter() - start
    if cache is None:
        print(f"data={groups['data']} is generated on the fly: nothing to build")
        return {}
    size = sum(p.stat().st_size for p in cache.directory.iterdir())
    print(f"{'built' if data.built_cache else 'reused'} {cache.directory} "
          f"({size / 2**20:.1f} MiB) in {seconds:.1f} s")
    stats = {split: data.split_stats(split) for split in data.splits}
    for split, s in stats.items():
        print(f"  {split:<10} tokens={s['tokens']:,} documents={s['documents']:,} "
              f"bytes={s['bytes']:,} words={s['words']:,}")
    if (cache.directory / "tokenizer").is_dir() and groups["data"] != "cached":
        print(f"without the sources: data=cached data.path={cache.directory} "
              f"tokenizer={groups['tokenizer']} tokenizer.path={cache.directory / 'tokenizer'}")
    return {"directory": str(cache.directory), "built": data.built_cache, "seconds": seconds,
            "splits": stats}


if __name__ == "__main__":
    main()
