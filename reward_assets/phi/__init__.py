"""PhiData configuration: the agents that write copy, on the Groq model."""
