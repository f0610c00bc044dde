"""`jobs/train.py` / `rlhfv train`: DDPO (RLHF-V eq. 5) on Ray Train + DeepSpeed over preference shards.

The driver checks the shards against the policy's initial model (their reference log-probs must come
from it), reads them with Ray Data and hands them to a TorchTrainer; every worker streams its split
(`get_dataset_shard` + `iter_torch_batches`, equal-sized so no rank waits at a collective) through the
shared loop with the DDPO loss. gamma = 1 gives vanilla DPO on the same pairs.
"""

from __future__ import annotations

import logging

from pydantic import Field, field_validator, model_validator

from rlhfv_ray.data.shards import check_shards_match_model, shard_files
from rlhfv_ray.ray_runtime import RayConfig
from rlhfv_ray.training.config import OptimConfig, TrainSection
from rlhfv_ray.training.ddpo import DDPOParams, PairLogps, ddpo_loss
from rlhfv_ray.training import rehearsal as rehearsal_lib
from rlhfv_ray.training.rehearsal import RehearsalConfig, rehearsal_nll

logger = logging.getLogger(__name__)


DDPO_OPTIM = OptimConfig(lr=1e-5, warmup_steps=5, max_steps=100, global_batch_size=32, micro_batch_size=16)


class DDPOSection(TrainSection):
    ddpo: DDPOParams = DDPOParams()
    optim: OptimConfig = DDPO_OPTIM
    log_every: int = Field(5, gt=0)
    # Train on only the first `max_pairs` pairs (shard file order, the same pairs on every run), for
    # data-scaling curves (paper Fig. 2); null uses them all, as does a value above the shards' count.
    max_pairs: int | None = Field(None, gt=0)
    # SFT data rehearsed beside the pairs (off by default, as in the paper), e.g. short-answer VQA
    rehearsal: RehearsalConfig = RehearsalConfig()

    @field_validator("optim", mode="before")
    @classmethod
    def _partial_optim_keeps_ddpo_defaults(cls, value):
        # `optim: {lr: 2e-5}` changes the lr of DDPO's defaults, not of the generic (SFT) ones
        return {**DDPO_OPTIM.model_dump(), **value} if isinstance(value, dict) else value


class DDPOConfig(DDPOSection):
    model: str  # the policy's initial model = the reference model the shards were built with
    shards: str  # output dir of build-shards
    out: str  # the aligned save_pretrained dir
    ray: RayConfig = RayConfig()
    run_name: str | None = None  # Ray Train run; rerunning the same name resumes it

    @model_validator(mode="after")
    def _rehearsal_has_data(self) -> "DDPOConfig":
        if self.rehearsal.enabled and not self.rehearsal.data:
            raise ValueError("rehearsal.weight > 0 needs rehearsal.data (an SFT dataset to rehearse)")
        return self


def make_ddpo_loss(params: DDPOParams, rehearsal_weight: float = 0.0):
    from rlhfv_ray.model.pair_forward import pair_token_logps

    def loss_fn(model, batch: dict):
        policy, chosen_mask, rejected_mask = pair_token_logps(model, batch)
        reference = PairLogps(batch["ref_chosen_logps"], batch["ref_rejected_logps"])
        loss, metrics = ddpo_loss(policy, reference, chosen_mask, rejected_mask,
                                  batch["chosen_corrected"], batch["rejected_corrected"], params)
        if rehearsal_weight:
            nll = rehearsal_nll(model, batch)
            loss = loss + rehearsal_weight * nll
            metrics["rehearsal_nll"] = nll.item()
        return loss, metrics

    return loss_fn


def make_pair_collate(processor, rehearsal_pool: list[dict] | None = None, per_micro_batch: int = 0,
                      seed: int = 0):
    """Pair tensors; with a rehearsal pool, also the rehearsal tensors its pair ids draw."""
    from rlhfv_ray.model.pair_forward import pair_batch

    def collate(rows: dict) -> dict:
        batch = pair_batch(rows, processor)
        if rehearsal_pool:
            drawn = rehearsal_lib.draw(rows["idx"], seed, len(rehearsal_pool), per_micro_batch)
            batch.update(rehearsal_lib.rehearsal_batch([rehearsal_pool[i] for i in drawn], processor))
        return batch

    return collate


def ddpo_worker(config_dict: dict) -> None:
    from rlhfv_ray.model.families import describe_pair_forward
    from rlhfv_ray.model.pair_forward import pair_widths
    from rlhfv_ray.training.policy import load_policy
    from rlhfv_ray.training.loop import LoopParts, run_training

    config = DDPOConfig.model_validate(config_dict)
    model, processor = load_policy(config, config.model)
    logger.info(describe_pair_forward(model))
    pool = None
    if config.rehearsal.enabled:
        import ray.train

        pool = rehearsal_lib.load_pool(ray.train.get_dataset_shard(rehearsal_lib.DATASET))
    parts = LoopParts("ddpo", make_ddpo_loss(config.ddpo, config.rehearsal.weight),
                      make_pair_collate(processor, pool, config.rehearsal.per_micro_batch, config.seed),
                      row_lengths=pair_widths,
                      count_tokens=lambda b: int(b["chosen_attention_mask"].sum() + b["rejected_attention_mask"].sum()))
    run_training(config, model, processor, parts, out=config.out)


def load_shard_dataset(shards: str, model: str, max_pairs: int | None = None):
    """The shards as a Ray Dataset, after refusing shards built with another reference model;
    only their first `max_pairs` pairs (in shard file order) when it is set."""
    import ray.data

    check_shards_match_model(shards, model)
    # Materialized before the trainer starts: when the workers hold every CPU of the cluster (2
    # workers x 1 CPU here), lazy read tasks would wait for a CPU forever. Shards are small (token
    # ids and per-token floats; images are PNG bytes), so they fit the object store.
    if max_pairs is None:
        return ray.data.read_parquet(shard_files(shards)).materialize()
    # "The first N pairs" must be the same N on every run: blocks are kept in file order rather
    # than in the order the read tasks happen to finish (the driver's setting, restored after).
    options = ray.data.DataContext.get_current().execution_options
    preserve_order, options.preserve_order = options.preserve_order, True
    try:
        dataset = ray.data.read_parquet(shard_files(shards)).materialize()
        available = dataset.count()  # from block metadata: no data is read
        if max_pairs >= available:
            logger.info(f"train: max_pairs={max_pairs} >= the {available} pairs of {shards}: using all of them")
            return dataset
        logger.info(f"train: using the first {max_pairs} of the {available} pairs of {shards}")
        return dataset.limit(max_pairs).materialize()
    finally:
        options.preserve_order = preserve_order


def run_train(config: DDPOConfig, fresh: bool = False):
    """Train on the shards with Ray Train and write the model to `config.out`. Returns Ray Train's
    Result (its `metrics_dataframe`: the logged records). `fresh`: start over rather than resume
    an earlier run of the same config."""
    from rlhfv_ray.training.trainer import fit_and_export, start_run

    from rlhfv_ray.data.conversations import prepare_conversations

    out = start_run(config, config.out)
    datasets = {"train": load_shard_dataset(config.shards, config.model, config.max_pairs)}
    if config.rehearsal.enabled:  # every worker draws from all of it: not split
        datasets[rehearsal_lib.DATASET], _ = prepare_conversations(
            config.rehearsal.conversation_data(), config.model, out, rehearsal_lib.DATASET)
    return fit_and_export(ddpo_worker, config, datasets, out, default_name="ddpo", fresh=fresh)
