"""Model cards: the generic front matter + markdown, and the card of a checkpoint hm3 made
(its text is part of the checkpoint's fingerprint, so it must not drift)."""

from hm3 import __version__
from hm3.checkpoints.card import model_card, recipe_card


def test_model_card_is_front_matter_then_markdown_in_the_given_order():
    assert model_card(
        {"base_model": ["b"], "library_name": "transformers", "tags": ["hm3"]}, "# T\n"
    ) == ("---\nbase_model:\n- b\nlibrary_name: transformers\ntags:\n- hm3\n---\n# T\n")


def test_recipe_card_text():
    card = recipe_card(
        "hm3 tiny code expert",
        "Fine-tuned.",
        {"role": "expert", "losses": [1.5, 0.25]},
        tags=["tiny-suite", "expert"],
        base_model="results/models/base",
    )
    assert card == (
        "---\nlibrary_name: transformers\ntags:\n- hm3\n- tiny-suite\n- expert\nbase_model: results/models/base\n"
        "---\n\n# hm3 tiny code expert\n\nFine-tuned.\n\n"
        f"Made by hm3 {__version__}.\n\n"
        "## How it was made\n\n```yaml\nrole: expert\nlosses: [1.5, 0.25]\n```\n"
    )
    assert "base_model" not in recipe_card("t", "s", {})
