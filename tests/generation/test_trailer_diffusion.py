"""The image-to-video path runs end to end with toy-size Stable Video Diffusion components built here."""

import pytest

from crossrec_core.errors import ModelLoadError
from crossrec_core.paths import resolve_data_dir
from generation.trailer import TrailerConfig, plan_trailer, render_trailer
from generation.trailer.diffusion import VideoDiffusionFrames
from generation.types import ControlSignals, CreativeItem


def _toy_checkpoint(path):
    import torch
    from diffusers import (
        AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32, num_attention_heads=8, projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32)
    scheduler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       interpolation_type="linear", num_train_timesteps=1000,
                                       prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002, steps_offset=1,
                                       timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True)
    vae = AutoencoderKLTemporalDecoder(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                                       down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"], latent_channels=4)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4, image_size=224,
        intermediate_size=37, patch_size=32))  # SVD feeds the encoder 224x224
    pipe = StableVideoDiffusionPipeline(vae=vae, image_encoder=encoder, unet=unet, scheduler=scheduler,
                                        feature_extractor=CLIPImageProcessor(crop_size=32, size=32))
    pipe.save_pretrained(path)
    return path


@pytest.fixture
def one_torch_thread():
    """Two torch threads on a shared 2-core machine spin against each other (28 s vs 3.4 s a call)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow  # importing diffusers' model zoo alone takes 15-20 s here
def test_toy_stable_video_diffusion_checkpoint_renders_a_trailer(tmp_path, one_torch_thread):
    posters = resolve_data_dir() / "ml100k-posters" / "data" / "posters"
    item = CreativeItem("1", "Toy Story (1995)", "", posters / "1.jpg")
    config = TrailerConfig(seconds=2.0, fps=8, chunk_frames=4, dissolve_frames=2)
    controls = ControlSignals(None)
    plan = plan_trailer([item], ["Toys"], controls, config)
    source = VideoDiffusionFrames(config, controls, _toy_checkpoint(tmp_path / "svd"), gen_size=(32, 48), steps=2,
                                  device="cpu")
    result = render_trailer(plan, source, tmp_path / "trailer.mp4", config)
    assert result.source == "VideoDiffusionFrames" and result.frames == plan.chunks * 4
    assert result.path.stat().st_size > 0


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no model_index.json"):
        VideoDiffusionFrames(TrailerConfig(), ControlSignals(None), tmp_path / "nothing")
