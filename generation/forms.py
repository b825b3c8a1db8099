"""Page forms of the generation app. They parse input only; the services validate and write."""

from django import forms

from generation.models import EnhancerKind


class PromptEnhancerForm(forms.Form):
    name = forms.SlugField(max_length=100)
    kind = forms.ChoiceField(choices=EnhancerKind.choices)
    template = forms.CharField(
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Holds {prompt}. A template enhancer's output; for a text-generation model, "
        "what it reads before it writes the enhanced prompt.",
    )
    style_phrases = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Template enhancers: one phrase a line, appended comma-separated.",
    )
    uri = forms.CharField(
        required=False,
        max_length=1000,
        label="Model folder",
        help_text="Text-generation enhancers (ML engineers): the absolute path of a "
        "transformers causal language model saved with its tokenizer.",
    )
    max_new_tokens = forms.IntegerField(
        required=False, initial=64, help_text="Text-generation enhancers: 1 to 256."
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_style_phrases(self) -> list[str]:
        return [line for line in self.cleaned_data["style_phrases"].splitlines() if line.strip()]

    def clean_max_new_tokens(self) -> int:
        value = self.cleaned_data["max_new_tokens"]
        return 64 if value is None else value
