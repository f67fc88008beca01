"""Attribute editing (paper §3.4): prompts, Textual Attribute Substitution and the VLM attribute list.

`prompts` builds the instance, regular and edit prompts and parses a VLM's answer, `tas` removes
the attribute directions from a conditioning, `vlm` asks a vision-language model for the attributes.
"""
