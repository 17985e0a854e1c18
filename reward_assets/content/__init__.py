"""Email copy: the LLM writer on Groq (PhiData), its guardrails and the templates."""
