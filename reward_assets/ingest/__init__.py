"""The input contract and its loading: landing files, validation, quarantine, sign-ups."""
