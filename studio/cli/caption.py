"""``python studio.py caption …`` and ``python studio.py lint …``: captioning and the caption linter, headless.

caption: 0 done, 2 a problem with what was passed (folder, output file, model, template), 130 stopped (what was
captioned so far is written; ``--missing-only`` continues). lint: 0 no errors (warnings allowed), 1 errors,
2 the file or tokenizer cannot be read.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from studio.cli.console import CountBar, graceful_stop, print_error
from studio.cli.exits import EXIT_FINDINGS, EXIT_OK, EXIT_STOPPED, EXIT_USER_ERROR


def register(subparsers) -> None:
    """Add the ``caption`` and ``lint`` sub-commands to the studio's argument parser."""
    caption = subparsers.add_parser("caption", help="caption a folder of images with BLIP into metadata.csv")
    caption.add_argument("--input", required=True, metavar="DIR", help="the folder of images (subfolders included)")
    caption.add_argument("--output", required=True, metavar="CSV", help="the metadata.csv to write")
    caption.add_argument("--model", default="", metavar="PATH_OR_ID",
                         help="BLIP model folder or hub id (default Salesforce/blip-image-captioning-base, online)")
    caption.add_argument("--template", default="{caption}", help="e.g. '**{caption}**, high quality, detailed'")
    caption.add_argument("--prefix", default="", help="put in front of every caption (a trigger word)")
    caption.add_argument("--suffix", default="", help="put after every caption (a style tag)")
    caption.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per forward pass (8)")
    caption.add_argument("--max-new-tokens", type=int, default=30, metavar="N", help="longest caption in tokens (30)")
    caption.add_argument("--prompt", default=None, help="text every caption starts from, e.g. 'a picture of'")
    caption.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:1, mps")
    caption.add_argument("--precision", default="auto", help="auto (float16 on a GPU), float32, float16, bfloat16")
    existing = caption.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace an existing output (kept as .bak)")
    existing.add_argument("--missing-only", action="store_true",
                          help="keep the existing output's rows and caption only images without one")
    caption.add_argument("--quiet", action="store_true", help="no progress bar")
    caption.set_defaults(handler=cmd_caption)

    lint = subparsers.add_parser("lint", help="check the captions in a metadata.csv (exit 1 when there are errors)")
    lint.add_argument("csv", help="the metadata.csv to check")
    lint.add_argument("--json", action="store_true", help="print the findings as JSON")
    lint.add_argument("--tokenizer-model", default=None, metavar="PATH",
                      help="the base model (diffusers folder, tokenizer folder or SD 1.x .safetensors) to count tokens "
                           "with; default the SD 1.x CLIP tokenizer")
    lint.add_argument("--required", action="append", default=[], metavar="WORD",
                      help="a word every caption must contain, e.g. the trigger word (repeatable)")
    lint.add_argument("--synonyms", action="append", default=[], metavar="A,B,…",
                      help="terms that mean the same thing, comma-separated (repeatable; adds to the defaults)")
    lint.add_argument("--no-default-synonyms", action="store_true", help="use only the --synonyms groups")
    lint.add_argument("--max-tokens", type=int, default=75, metavar="N", help="the text encoder's window (75)")
    lint.add_argument("--chart", default=None, metavar="PNG", help="also draw the keyword chart into this file")
    lint.set_defaults(handler=cmd_lint)


def cmd_caption(args) -> int:
    from studio.caption.blip import CaptionModelError, caption_folder, list_images, load_captioner
    from studio.caption.edits import EditError, apply_template
    from studio.data import DatasetError, write_metadata

    folder, output = Path(args.input), Path(args.output)
    try:
        apply_template([], args.template)
        if args.batch_size < 1:
            raise EditError(f"--batch-size must be 1 or more, not {args.batch_size}.")
        if not folder.is_dir():
            raise EditError(f"{folder} is not a folder; pass the folder that holds your images with --input.")
        if output.exists() and not (args.overwrite or args.missing_only):
            raise EditError(f"{output} already exists; pass --missing-only to caption only the images it has no row "
                            f"for, or --overwrite to replace it (the old file is kept as {output.name}.bak).")
        kept = _kept_rows(output) if args.missing_only and output.exists() else []
        todo = [name for name in list_images(folder) if name not in {record.filename for record in kept}]
        if not todo:
            print(f"{folder}: no images to caption" + (" (every image has a row)" if kept else ""), file=sys.stderr)
            return EXIT_OK if kept else EXIT_USER_ERROR
        captioner = load_captioner(args.model, device=args.device, dtype=args.precision)
    except (EditError, DatasetError, CaptionModelError) as error:
        print_error(error)
        return EXIT_USER_ERROR
    print(f"captioning {len(todo)} image(s) with {captioner.source} on {captioner.device}", file=sys.stderr)
    try:
        with (graceful_stop("stopping after this batch and writing what is captioned") as stop,
              CountBar("image", args.quiet, total=len(todo)) as progress):
            records = caption_folder(folder, captioner, template=args.template, prefix=args.prefix,
                                     suffix=args.suffix, batch_size=args.batch_size, progress=progress,
                                     should_stop=stop.is_set, skip={r.filename for r in kept},
                                     max_new_tokens=args.max_new_tokens, prompt=args.prompt)
    except DatasetError as error:
        print_error(error)
        return EXIT_USER_ERROR
    write_metadata(output, list(kept) + records)
    print(f"wrote {len(records)} caption(s) to {output}; check them with: python studio.py lint {output}")
    if len(records) < len(todo):
        print(f"stopped after {len(records)} of {len(todo)} images; run again with --missing-only to caption the "
              "rest", file=sys.stderr)
        return EXIT_STOPPED
    return EXIT_OK


def cmd_lint(args) -> int:
    from studio.caption.chart import keyword_chart
    from studio.caption.lint import DEFAULT_SYNONYMS, count_severities, lint_file
    from studio.caption.markup import split_tags
    from studio.caption.tokens import TokenizerError, load_token_counter
    from studio.data import DatasetError, read_metadata

    groups = [] if args.no_default_synonyms else list(DEFAULT_SYNONYMS)
    groups += [tuple(split_tags(group)) for group in args.synonyms if len(split_tags(group)) > 1]
    try:
        counter = load_token_counter(args.tokenizer_model)
        findings = lint_file(args.csv, counter, required_keywords=args.required, synonym_groups=groups,
                             max_tokens=args.max_tokens)
        chart = keyword_chart(read_metadata(args.csv).records, args.chart) if args.chart else None
    except (DatasetError, TokenizerError) as error:
        print_error(error)
        return EXIT_USER_ERROR
    counts = count_severities(findings)
    if args.json:
        report = {"file": str(args.csv), "token_counter": counter.source, "exact_token_count": counter.exact,
                  "errors": counts["error"], "warnings": counts["warning"],
                  "findings": [asdict(finding) for finding in findings]}
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        for finding in findings:
            print(f"{args.csv}: {finding}")
        print(f"{args.csv}: {counts['error']} error(s), {counts['warning']} warning(s); tokens counted with "
              f"{counter.source}" + (f"; keyword chart: {chart}" if chart else ""), file=sys.stderr)
    return EXIT_FINDINGS if counts["error"] else EXIT_OK


def _kept_rows(output: Path):
    """The rows of an existing output that ``--missing-only`` keeps (refused if rewriting would lose columns)."""
    from studio.caption.edits import check_rewritable
    from studio.data import read_metadata

    table = read_metadata(output)
    check_rewritable(output, table)
    return table.records
