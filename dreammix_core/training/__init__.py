"""Subject training (paper §3.2): the Attribute Decoupling Mechanism's data and the LoRA fine-tune.

`subject_photos` gathers the photos and masks, `regular_data` is the regular-data folder format,
`mask_augment` draws the augmented masks, `data` mixes subject copies and regular data, `loss`
weights the mask, `loop` runs resumable training, `lora_file` names and writes the LoRA,
`diffusers_training` trains a diffusers UNet with peft.
"""
