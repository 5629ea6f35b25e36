"""google, as far as the cold-start benchmark's google.colab stand-in needs it."""
