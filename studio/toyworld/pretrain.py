"""Pretrain the toy-world base model from nothing, on the CPU, and save it as a diffusers SD 1.x folder.

    python -m studio.toyworld.pretrain --out assets/toy-world [--vae-steps 2000] [--steps 9000] [--threads 1]

Stage 1 trains the VAE (all shapes and both styles, so the decoder can draw what LoRAs will later teach);
stage 2 caches the latents of a pool of base-world scenes (circles, squares, triangles; solid) and trains the
UNet and the CLIP text encoder jointly with v-prediction on a zero-terminal-SNR schedule, an EMA of the weights,
and 10 % empty captions for classifier-free guidance. Everything is seeded.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from . import architecture  # noqa: E402
from .vocab import build_clip_tokenizer  # noqa: E402
from .world import ALL_SHAPES, BASE_SHAPES, caption, random_scene, render  # noqa: E402

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from PIL import Image
    from transformers import CLIPTextModel, CLIPTokenizer

    from .world import Scene


def images_to_tensor(images: Iterable[Image.Image]) -> torch.Tensor:
    array = np.stack([np.asarray(im, dtype=np.float32) for im in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0


def cosine_lr(step: int, total: int, base: float, warmup: int = 200) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_vae(vae: AutoencoderKL, rng: random.Random, steps: int, batch: int, log: Callable[[str], None]) -> float:
    """Train the autoencoder on freshly drawn scenes; returns the held-out reconstruction MSE."""
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    vae.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, steps, 1e-3)
        scenes = [random_scene(rng, ALL_SHAPES, style=rng.choice(["solid", "solid", "striped"])) for _ in range(batch)]
        x = images_to_tensor(render(s) for s in scenes)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        kl = posterior.kl().mean() / x[0].numel()
        loss = F.mse_loss(recon, x) + 1e-4 * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"vae step {step}/{steps} loss {loss.item():.5f}")
    vae.eval()
    held_out = random.Random(12345)
    x = images_to_tensor(render(random_scene(held_out, ALL_SHAPES)) for _ in range(256))
    with torch.no_grad():
        recon = vae.decode(vae.encode(x).latent_dist.mode()).sample
    return F.mse_loss(recon, x).item()


def encode_pool(vae: AutoencoderKL, scenes: Sequence[Scene], batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every scene's latents (sampled afresh at each training step)."""
    means, stds = [], []
    with torch.no_grad():
        for start in range(0, len(scenes), batch):
            x = images_to_tensor(render(s) for s in scenes[start : start + batch])
            dist = vae.encode(x).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


class Ema:
    """Exponential moving average of parameters, with the usual warm-up of the decay."""

    def __init__(self, modules: Iterable[torch.nn.Module], decay: float) -> None:
        self.live = [p for m in modules for p in m.parameters()]
        self.shadow = [p.detach().clone() for p in self.live]
        self.decay = decay

    @torch.no_grad()
    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for shadow, live in zip(self.shadow, self.live):
            shadow.lerp_(live.detach(), 1 - decay)

    @torch.no_grad()
    def copy_to_live(self) -> None:
        for shadow, live in zip(self.shadow, self.live):
            live.copy_(shadow)


# (clean latents, noise, generator) -> (noisy latents, timesteps, the target the denoiser is trained to predict)
Corruption = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def v_prediction(scheduler: DDIMScheduler) -> Corruption:
    """Noise at a uniformly drawn timestep of ``scheduler``; the target is the velocity ``a·noise - s·latents``."""
    alphas = scheduler.alphas_cumprod

    def corrupt(latents: torch.Tensor, noise: torch.Tensor, generator: torch.Generator):
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=generator)
        noisy = scheduler.add_noise(latents, noise, t)
        a = alphas[t].sqrt().view(-1, 1, 1, 1)
        s = (1 - alphas[t]).sqrt().view(-1, 1, 1, 1)
        return noisy, t, a * noise - s * latents

    return corrupt


def train_denoiser(modules: list[torch.nn.Module],
                   predict: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                   scheduler: DDIMScheduler | None, pool: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
                   args: argparse.Namespace, log: Callable[[str], None], corrupt: Corruption | None = None) -> None:
    """Train ``modules`` (denoiser and text encoders) on cached latents: v-prediction on ``scheduler`` unless
    ``corrupt`` says how latents are noised and what the target is (flow matching for FLUX).

    ``predict(noisy, timesteps, tokens)`` runs the text encoders and the denoiser as the model's family does.
    """
    means, stds, ids, empty_ids = pool
    corrupt = corrupt or v_prediction(scheduler)
    params = [p for module in modules for p in module.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    ema = Ema(modules, args.ema)
    generator = torch.Generator().manual_seed(args.seed)
    for module in modules:
        module.train()
    started = time.time()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, args.steps, args.lr)
        index = torch.randint(0, len(means), (args.batch,), generator=generator)
        sampled = means[index] + stds[index] * torch.randn(means[index].shape, generator=generator)
        latents = (sampled - getattr(args, "shift", 0.0)) * args.scale
        tokens = ids[index].clone()
        drop = torch.rand(args.batch, generator=generator) < 0.1
        tokens[drop] = empty_ids
        noise = torch.randn(latents.shape, generator=generator)
        noisy, t, target = corrupt(latents, noise, generator)
        loss = F.mse_loss(predict(noisy, t, tokens), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        ema.update(step)
        if step % 250 == 0 or step == args.steps - 1:
            rate = (time.time() - started) / (step + 1)
            log(f"{getattr(args, 'denoiser_name', 'unet')} step {step}/{args.steps} loss {loss.item():.4f} {rate:.3f} s/step")
    ema.copy_to_live()
    for module in modules:
        module.eval()


def build_components(tokenizer_dir: Path
                     ) -> tuple[CLIPTokenizer, CLIPTextModel, AutoencoderKL, UNet2DConditionModel, DDIMScheduler]:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_clip_tokenizer(tokenizer_dir)
    text_config = CLIPTextConfig(
        **architecture.text_encoder_config(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    )
    return (
        tokenizer,
        CLIPTextModel(text_config),
        AutoencoderKL(**architecture.vae_config()),
        UNet2DConditionModel(**architecture.unet_config()),
        DDIMScheduler(**architecture.scheduler_config()),
    )


def denoiser_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options both toy models' pretraining share (output folder and the denoiser's recipe)."""
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=9000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--pool", type=int, default=40000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    return parser


def start_run(args: argparse.Namespace) -> tuple[random.Random, Callable[[str], None], float]:
    """Seed and thread settings of a pretraining run; returns (scene rng, a timestamped logger)."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {message}", flush=True)

    return random.Random(args.seed), log, started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    denoiser_arguments(parser).add_argument("--vae-steps", type=int, default=2000)
    args = parser.parse_args(argv)
    rng, log, started = start_run(args)

    with tempfile.TemporaryDirectory() as work:
        tokenizer, text_encoder, vae, unet, scheduler = build_components(Path(work))
    recon_mse = train_vae(vae, rng, args.vae_steps, args.batch, log)
    scenes = [random_scene(rng, BASE_SHAPES) for _ in range(args.pool)]
    means, stds = encode_pool(vae, scenes)
    args.scale = float(1.0 / means.std())
    vae.register_to_config(scaling_factor=args.scale)
    log(f"vae held-out recon MSE {recon_mse:.5f}; latent scaling factor {args.scale:.4f}")
    ids = tokenizer([caption(s) for s in scenes], padding="max_length", max_length=77, return_tensors="pt").input_ids
    empty_ids = tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids[0]
    def predict(noisy, timesteps, tokens):
        return unet(noisy, timesteps, text_encoder(tokens)[0]).sample

    train_denoiser([unet, text_encoder], predict, scheduler, (means, stds, ids, empty_ids), args, log)
    save_pipeline(args.out, tokenizer, text_encoder, vae, unet, scheduler)
    stats = {
        "vae_steps": args.vae_steps, "unet_steps": args.steps, "batch": args.batch, "pool": args.pool,
        "lr": args.lr, "ema": args.ema, "seed": args.seed, "threads": args.threads,
        "vae_recon_mse": round(recon_mse, 5), "scaling_factor": round(args.scale, 5),
        "wall_time_s": round(time.time() - started, 1),
    }
    (args.out / "pretrain.json").write_text(json.dumps(stats, indent=2) + "\n")
    log(f"saved to {args.out}: {stats}")


def save_pipeline(out: Path, tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, vae: AutoencoderKL,
                  unet: UNet2DConditionModel, scheduler: DDIMScheduler) -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(str(out), safe_serialization=True)


if __name__ == "__main__":
    main()
