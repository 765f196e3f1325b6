"""The recipe's ``distill`` section: the method name and one sub-section per method."""

from __future__ import annotations

from pydantic import Field

from cidpipe.sections import Section


class KDConfig(Section):
    """Hinton et al. 2015."""

    temperature: float = Field(4.0, gt=0)
    ce_weight: float = Field(0.1, ge=0)
    kd_weight: float = Field(0.9, ge=0)


class FitNetConfig(Section):
    """Romero et al. 2015, hint on the penultimate feature through a linear regressor.

    RepDistiller's weight of 100 is for a hint on an intermediate feature map; on the pooled penultimate
    feature it swamps cross-entropy (diverged on digits, 18 % on Fashion-MNIST in docs/results.md), so the
    default here is 1.
    """

    ce_weight: float = Field(1.0, ge=0)
    hint_weight: float = Field(1.0, ge=0)


class DKDConfig(Section):
    """Zhao et al. CVPR 2022 (decoupled KD); defaults from the paper's CIFAR-100 setting."""

    temperature: float = Field(4.0, gt=0)
    ce_weight: float = Field(1.0, ge=0)
    alpha: float = Field(1.0, ge=0, description="target-class KD weight")
    beta: float = Field(8.0, ge=0, description="non-target-class KD weight")
    warmup_epochs: int = Field(20, ge=0, description="linear ramp of the KD terms")


class CIDConfig(Section):
    """Deng & Zhang, NeurIPS 2021; see docs/cid-method.md for the meaning of every weight."""

    temperature: float = Field(4.0, gt=0)
    kd_weight: float = Field(1.0, ge=0, description="a: weight of KD (and CE after warm-up)")
    sample_weight: float = Field(10.0, ge=0, description="b: sample-representation (normalised MSE) weight")
    class_weight: float = Field(1.0, ge=0, description="c: class-representation (cosine Gram) weight")
    warmup_epochs: int = Field(20, ge=1, description="epochs without CE; D is built during the last one")
    dictionary_momentum: float = Field(0.0, ge=0, lt=1, description="u: D <- u D_old + (1-u) D_new")


class CEConfig(Section):
    """Plain cross-entropy: no hyper-parameters (a typed empty section, so nothing free-form is accepted)."""


class DistillConfig(Section):
    enabled: bool = True
    method: str = Field("cid", description="a registered distillation method (the schema enum lists them)")
    ce: CEConfig = Field(default_factory=CEConfig, description="the ce method takes no hyper-parameters")
    kd: KDConfig = KDConfig()
    fitnet: FitNetConfig = FitNetConfig()
    dkd: DKDConfig = DKDConfig()
    cid: CIDConfig = CIDConfig()
    reuse_teacher_outputs: bool = Field(
        False,
        description="compute the teacher's logits/features of every training sample once and look them up; "
        "exact when data.augment is false, an approximation (with a warning) when it is true",
    )
