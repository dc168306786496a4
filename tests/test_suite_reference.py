"""docs/suites.md is generated from the suite models and kept in step with them."""

from pathlib import Path

from pydantic import Field

from perfci.cli import suite_reference
from perfci.config import Run, Suite

DOC = Path(__file__).resolve().parent.parent / "docs" / "suites.md"


def test_docs_suites_md_matches_the_models():
    assert DOC.read_text() == suite_reference.suite_reference_markdown(), (
        f"docs/suites.md is out of date with perfci/config.py; regenerate it: {suite_reference.REGENERATE}"
    )


def test_a_new_key_appears_with_its_type_default_bounds_and_description():
    class RunWithCap(Run):
        max_duration_s: float | None = Field(default=None, gt=0, description="Stop the point after this long.")

    class Extended(Suite):
        max_error_rate: float = Field(default=0.05, ge=0, le=1, description="Most errors a point may have.")
        run: RunWithCap = Field(default=RunWithCap(requests=20), description="How each point runs.")

    text = suite_reference.suite_reference_markdown(Extended)
    assert "| `max_error_rate` | number | `0.05` | ≥ 0, ≤ 1 | Most errors a point may have. |" in text
    run_section = text.split("## RunWithCap", 1)[1].split("\n## ", 1)[0]
    assert "| `max_duration_s` | number, or unset | unset | > 0 | Stop the point after this long. |" in run_section
    assert "| `run` | table ([RunWithCap](#runwithcap)) | `{ requests = 20 }` |" in text


def test_keys_perfci_sets_itself_are_not_documented():
    text = suite_reference.suite_reference_markdown()
    assert "`content_hash`" not in text and "| `path` |" not in text


def test_every_model_reached_from_a_suite_has_a_section_naming_where_it_is_written():
    text = suite_reference.suite_reference_markdown()
    for heading, where in (("Model", "`models[i]`"), ("Load", "`workloads[i].load`"),
                           ("Distribution", "`workloads[i].prompt_tokens`, `workloads[i].output_tokens`")):  # fmt: skip
        assert f"## {heading}\n\nWhere: {where}." in text


def test_the_module_writes_the_page(tmp_path):
    out = tmp_path / "suites.md"
    assert suite_reference.main([str(out)]) == 0
    assert out.read_text() == suite_reference.suite_reference_markdown()
    assert suite_reference.main([]) == 2


def test_every_suite_key_has_a_description():
    undescribed = [f"{model.__name__}.{name}" for model, _ in suite_reference._models(Suite, "")
                   for name, field in suite_reference._fields(model) if not field.description]  # fmt: skip
    assert undescribed == [], f"give these keys Field(description=...) in perfci/config.py: {undescribed}"
