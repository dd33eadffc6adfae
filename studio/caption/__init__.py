"""Captioning: BLIP auto-captions, bulk caption edits with undo, the prompt linter, structured prompts and charts.

Importing the package is cheap: torch and transformers load only with a model (``load_captioner``), matplotlib
only with a chart.
"""
from studio.caption.blip import DEFAULT_BLIP, CaptionModelError, Captioner, caption_folder, list_images, load_captioner
from studio.caption.chart import keyword_chart
from studio.caption.edits import (
    EditError,
    EditResult,
    add_prefix,
    add_suffix,
    apply_template,
    backup_path,
    edit_metadata,
    find_replace,
    set_caption,
    tidy_caption,
)
from studio.caption.formula import FORMULA_FIELDS, build_caption
from studio.caption.history import CaptionHistory
from studio.caption.lint import (
    DEFAULT_SYNONYMS,
    RULES,
    SUBJECTIVE_WORDS,
    Finding,
    count_severities,
    lint_captions,
    lint_file,
)
from studio.caption.markup import (
    MarkupIssue,
    StructuredPrompt,
    core_tags,
    join_tags,
    markup_issues,
    parse_structured,
    split_tags,
    strip_markup,
    tag_frequency,
)
from studio.caption.tokens import TokenCounter, TokenizerError, load_token_counter

__all__ = [
    "DEFAULT_BLIP", "DEFAULT_SYNONYMS", "FORMULA_FIELDS", "RULES", "SUBJECTIVE_WORDS",
    "CaptionHistory", "CaptionModelError", "Captioner", "EditError", "EditResult", "Finding", "MarkupIssue",
    "StructuredPrompt", "TokenCounter", "TokenizerError",
    "add_prefix", "add_suffix", "apply_template", "backup_path", "build_caption", "caption_folder", "core_tags",
    "count_severities", "edit_metadata", "find_replace", "join_tags", "keyword_chart", "lint_captions", "lint_file",
    "list_images", "load_captioner", "load_token_counter", "markup_issues", "parse_structured", "set_caption",
    "split_tags", "strip_markup", "tag_frequency", "tidy_caption",
]
