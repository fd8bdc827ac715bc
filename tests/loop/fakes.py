"""A scripted model for testing the loop's logic (never what a user runs)."""

from __future__ import annotations

from kisystem.models.base import Generation, GenerationRequest, OnText


class ScriptedModel:
    """Answers each model's requests from its own list, in order; an exception is raised."""

    def __init__(self, script: dict[str, list[str | Exception]]) -> None:
        self.script = {model: list(answers) for model, answers in script.items()}
        self.requests: list[GenerationRequest] = []

    async def generate(self, request: GenerationRequest, on_text: OnText | None = None) -> Generation:
        self.requests.append(request)
        answers = self.script.get(request.model)
        if not answers:
            raise AssertionError(f"no scripted answer left for {request.model}")
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if on_text:
            on_text(answer)
        return Generation(text=answer, model=request.model, prompt_tokens=10,
                          completion_tokens=len(answer.split()), total_s=0.01, first_token_s=0.005)
