"""Ready-made quantization problems (installed as ``qaev.problems``) and their bundled assets."""
