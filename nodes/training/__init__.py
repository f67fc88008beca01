"""Training nodes (paper §3.2), adapters to `dreammix_core.training`.

subject_photos   DreamMix Subject Photos: photos of any sizes with their masks, as lists
regular_data     DreamMix Regular Data: the ADM's regular images generated with the base model
train_lora       DreamMix Train Subject LoRA: the resumable subject LoRA fine-tune
comfy_training   its model side on ComfyUI (adapters, encoded copies, epsilon prediction)
"""

from .regular_data import DreamMixRegularData
from .subject_photos import DreamMixSubjectPhotos
from .train_lora import DreamMixTrainSubjectLoRA

NODES = [DreamMixSubjectPhotos, DreamMixRegularData, DreamMixTrainSubjectLoRA]
