"""The quantization engine: a float model, its layers, calibration statistics and caches,
turning any :class:`~qaev.config.QuantConfig` into the QDQ model ONNX Runtime runs."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx

from qaev.quantize.calibration.stats import ActivationStats
from qaev.data._cache import cache_dir
from qaev.config import CalibMethod, LayerConfig, QuantConfig, RoundingInputs, ScaleRule
from qaev.errors import ConfigError
from qaev.model.graph import FloatModel
from qaev.model.layers import LayerInfo, find_layers
from qaev.quantize.plan import activation_plan, fit_to_layer
from qaev.quantize.layer_inputs import LayerInputs
from qaev.quantize.learned.store import load_result, result_key, save_result
from qaev.quantize.qdq import build_qdq
from qaev.quantize.rounding.registry import rounding_entry
from qaev.quantize.sequential import Fitted, fit_sequential
from qaev.quantize.weights import WeightCache

__all__ = ["Quantizer", "cache_dir", "activation_tensors", "uniform_config", "model_scope_layers"]


def _data_key(batches: Sequence[Mapping[str, np.ndarray]]) -> str:
    digest = hashlib.sha256()
    for feed in batches:
        for name in sorted(feed):
            arr = np.ascontiguousarray(feed[name])
            digest.update(name.encode() + str(arr.dtype).encode() + str(arr.shape).encode())
            digest.update(arr.tobytes())
    return digest.hexdigest()[:16]


class Quantizer:
    """Builds QDQ models of one float model.

    Args:
        model: the normalised float model.
        layers: its quantizable layers (found when omitted).
        stats: activation statistics covering every layer's activation tensors; required
            only for configs with static activations that carry no ranges.
        inputs: layer-input statistics (lazy); required only for configs with ``gptq``
            rounding or bias correction (:meth:`calibrated` sets it up).
        reconstruction: the :class:`~qaev.quantize.learned.reconstruct.ReconstructOptions`
            of ``block`` rounding (None: its defaults); the config's
            :class:`~qaev.config.BlockSettings` set the steps and the seed.

    Example:
        >>> from qaev.data import digits_model_path, load_digits_split
        >>> from qaev.model.graph import load_model
        >>> q = Quantizer.calibrated(load_model(digits_model_path()), load_digits_split("calib"))
        >>> cfg = q.resolve(QuantConfig.uniform(q.layer_names, w_bits=4))
        >>> len(cfg.ranges) > 0 and cfg.model_sha256 == q.model.sha256
        True
    """

    def __init__(self, model: FloatModel, *, layers: Sequence[LayerInfo] | None = None,
                 stats: ActivationStats | None = None, inputs: LayerInputs | None = None,
                 reconstruction=None) -> None:
        self.model = model
        self.layers = list(layers) if layers is not None else find_layers(model)
        self.stats = stats
        self.inputs = inputs
        self.weights = WeightCache()
        self.stats_path: Path | None = None
        self.reconstruction = reconstruction
        #: Folders searched for a learned block reconstruction before the calibration cache
        #: (a run directory's ``learned/``, which travels with the run).
        self.learned_dirs: tuple[Path, ...] = ()
        self._fits: dict = {}
        self._learned_files: dict[str, Path] = {}

    @classmethod
    def calibrated(cls, model: FloatModel, calib, *, batch_size: int = 64, threads: int = 1,
                   layers: Sequence[LayerInfo] | None = None, persist: bool = True,
                   reconstruction=None) -> "Quantizer":
        """Collect statistics for every candidate activation tensor in one pass over
        ``calib`` (an :class:`~qaev.data.ArrayDataset`), reusing a persisted copy when the
        same model and data were seen before (``reconstruction``: as for the constructor)."""
        batch_size = min(batch_size, getattr(calib, "max_batch", None) or batch_size)  # large outputs: smaller runs
        batches = list(calib.batches(batch_size=model.fixed_batch or batch_size))
        first = batches[0] if batches else {}
        if layers is None:
            layers = find_layers(model, input_shapes={k: np.shape(v) for k, v in first.items()})
        if batches:
            model.check_feed(first)
        tensors = activation_tensors(layers)
        path = cache_dir("calib") / f"{model.sha256[:16]}-{_data_key(batches)}.npz" if persist else None
        stats = None
        if path is not None and path.is_file():
            try:
                stats = ActivationStats.load(path)
                if not set(tensors) <= set(stats.tensors):
                    stats = None
            except Exception:  # a corrupt cache is recomputed, never trusted
                stats = None
        if stats is None:
            stats = ActivationStats.collect(model.proto, tensors, batches, threads=threads)
            if path is not None:
                stats.save(path)
        inputs = LayerInputs(model, layers, calib, cache=path.parent if path is not None else None, threads=threads)
        quantizer = cls(model, layers=layers, stats=stats, inputs=inputs, reconstruction=reconstruction)
        quantizer.stats_path = path
        return quantizer

    @property
    def layer_names(self) -> list[str]:
        """Names of the quantizable layers, in graph order."""
        return [layer.name for layer in self.layers]

    def resolve(self, config: QuantConfig) -> QuantConfig:
        """``config`` bound to this model, with the calibrated range of every static
        activation it quantizes (existing ranges are kept when no statistics exist)."""
        if config.model_sha256 not in (None, self.model.sha256):
            raise ConfigError(
                f"model_sha256: config was made for model {config.model_sha256[:12]}..., "
                f"this model is {self.model.sha256[:12]}..."
            )
        plan = activation_plan(config, self.layers)
        if self.stats is None:
            missing = [t for t in plan.tensors() if t not in config.ranges]
            if missing:
                raise ConfigError(f"ranges: no calibrated range for activation {missing[0]!r} and no calibration data")
            ranges = {t: config.ranges[t] for t in plan.tensors()}
        else:
            outputs = {o.name for o in self.model.proto.graph.output}
            # A model output is never clipped: clipped logits tie at the top and break the metric.
            ranges = {t: self.stats.range(t, CalibMethod.MINMAX if t in outputs else config.calibration, bits)
                      for t, bits in plan.bits.items()}
        return config.with_ranges(ranges).with_model(self.model.sha256)

    def build(self, config: QuantConfig, *, resolved: bool = False) -> onnx.ModelProto:
        """The QDQ evaluation model of ``config`` (ranges resolved first, unless ``resolved``
        says ``config`` came from :meth:`resolve` already)."""
        config = config if resolved else self.resolve(config)
        config, fitted = self.learned(config)
        return build_qdq(self.model, self.layers, config, cache=self.weights, inputs=self.inputs, fitted=fitted)

    def learned(self, config: QuantConfig) -> tuple[QuantConfig, dict[str, Fitted] | None]:
        """What a resolved ``config`` takes from model-scope fits: the config with the
        activation ranges block reconstruction learned, and the layers fitted to quantized
        inputs or learned by block reconstruction (None when there are none)."""
        if model_scope_layers(config):
            learned = self.reconstructed(config)
            return learned.config(config), dict(learned.fitted)
        return config, self.fitted(config) if config.rounding_inputs is RoundingInputs.QUANTIZED else None

    def reconstructed(self, config: QuantConfig):
        """Block reconstruction of the ``block`` layers of a resolved ``config``
        (:func:`qaev.quantize.learned.reconstruct.reconstruct` with :attr:`reconstruction`;
        the last few results are kept).

        Raises:
            ConfigError: no calibration data, ``rounding_inputs: quantized`` beside it, or
                PyTorch is not installed.
        """
        key = self._fit_key(config)
        if key not in self._fits:
            self._keep_fit(key, self._reconstruct(config)[1])
        return self._fits[key]

    def learn_within(self, config: QuantConfig, deadline: float) -> QuantConfig:
        """Learn the block reconstruction of ``config`` (resolved here) so that it ends by
        ``deadline`` (a ``time.monotonic()``): where the learning runs behind, later blocks get
        fewer steps (:mod:`qaev.quantize.learned.pacing`). Returns the config to build, with
        the steps each block got in :attr:`~qaev.config.BlockSettings.steps` where they are
        not the planned ones; that config rebuilds the same weights without a deadline."""
        config = self.resolve(config)
        self._fit_key(config)  # its checks, before any learning
        config, result = self._reconstruct(config, deadline=deadline)
        self._keep_fit(self._fit_key(config), result)
        return config

    def _fit_key(self, config: QuantConfig) -> str:
        """The key of a config's block reconstruction among the kept fits (checking that it
        can be learned at all)."""
        if self.inputs is None:
            raise ConfigError("rounding: block reconstruction needs calibration data (build with "
                              "Quantizer.calibrated)")
        if config.rounding_inputs is RoundingInputs.QUANTIZED:
            raise ConfigError("rounding_inputs: block rounding fits its layers to quantized inputs itself; "
                              "use rounding_inputs: float with it")
        return f"block-{config.key()}-{self.reconstruction!r}"  # options may change between builds

    def _keep_fit(self, key: str, fit) -> None:
        if key not in self._fits and len(self._fits) >= 4:
            self._fits.pop(next(iter(self._fits)))
        self._fits[key] = fit

    def _reconstruct(self, config: QuantConfig, *, deadline: float | None = None):
        """Block reconstruction of ``config``, read back from the calibration cache folder when
        the same model, data, config and options were learned before, else learned (by
        ``deadline`` where given) and kept; with the config it belongs to (``config``, or with a
        deadline that cut steps, ``config`` with the steps each block got)."""
        from qaev.quantize.learned.reconstruct import LOG, reconstruct

        options, batches = self._learning(config)
        data_key, folder = _data_key(batches), self.inputs.cache
        key = self._result_key(config, options, data_key)
        for where in (*self.learned_dirs, *([] if folder is None else [folder])):
            found = load_result(where, key)
            if found is not None:
                path = self._learned_files[config.key()] = Path(where) / f"{key}.npz"
                LOG.info("block reconstruction: %d blocks read from %s (learned in %.0f s)", len(found.blocks),
                         path, found.seconds)
                return config, found
        result = reconstruct(self.model, self.layers, config, batches, options=options, inputs=self.inputs,
                             weights=self.weights, deadline=deadline)
        if result.steps != options.planned(len(result.blocks)):  # the deadline cut steps
            config = replace(config, block=replace(config.block, steps=result.steps))
            key = self._result_key(config, replace(options, steps=result.steps), data_key)
        if folder is not None:
            save_result(folder, key, result)
            self._learned_files[config.key()] = Path(folder) / f"{key}.npz"
        return config, result

    def _learning(self, config: QuantConfig):
        """The learning options and calibration feeds of ``config``'s block reconstruction."""
        from qaev.quantize.learned.reconstruct import ReconstructOptions

        options = replace(self.reconstruction or ReconstructOptions(), iters=config.block.iters,
                          seed=config.block.seed, output_loss=config.block.output_loss.value,
                          learn_scale=config.block.learn_scale, steps=config.block.steps)
        batches = self.inputs.batches()
        if config.block.mirror:  # the learning's samples only: ranges and GPTQ's start stay the calibration data's
            batches = _with_mirror_images(batches)
        return options, batches

    def _result_key(self, config: QuantConfig, options, data_key: str) -> str:
        return result_key(model_sha256=self.model.sha256, data_key=data_key, config_key=config.key(), options=options)

    def learned_file(self, config: QuantConfig) -> Path | None:
        """The file holding the block reconstruction this quantizer built ``config`` with
        (None when it learned none for it, or kept none on disk): the learned model itself,
        which another machine's floating-point arithmetic would not learn again bit for bit."""
        return self._learned_files.get(self.resolve(config).key())

    def fitted(self, config: QuantConfig) -> dict[str, Fitted]:
        """The layers of a resolved ``config`` fitted to quantized inputs
        (:mod:`qaev.quantize.sequential`; the last few configs' fits are kept).

        Raises:
            ConfigError: the quantizer has no calibration data.
        """
        key = config.key()
        if key not in self._fits:
            if self.inputs is None:
                raise ConfigError("rounding_inputs: fitting layers to quantized inputs needs calibration data "
                                  "(build with Quantizer.calibrated)")

            def build(partial: QuantConfig, done: Mapping[str, Fitted]) -> onnx.ModelProto:
                return build_qdq(self.model, self.layers, partial, cache=self.weights, inputs=self.inputs, fitted=done)

            if len(self._fits) >= 4:
                self._fits.pop(next(iter(self._fits)))
            self._fits[key] = fit_sequential(self.model, self.layers, config, self.inputs, build=build,
                                             threads=self.inputs.threads)
        return self._fits[key]


def _with_mirror_images(batches: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """``batches`` followed by their images mirrored left to right (``block.mirror``).

    Raises:
        ConfigError: an input is not a batch of images ``[N, C, H, W]`` (named).
    """
    from qaev.data.augment import mirror_images
    from qaev.errors import DataError

    try:
        return [*batches, *(mirror_images(feed, where="block.mirror: calibration data") for feed in batches)]
    except DataError as exc:
        raise ConfigError(str(exc)) from None


def model_scope_layers(config: QuantConfig) -> list[str]:
    """Quantized layers of ``config`` whose rounding method works at model scope (``block``)."""
    return [name for name, cfg in config.layers.items()
            if not cfg.is_float and rounding_entry(cfg.effective().rounding).model_scope]


def activation_tensors(layers: Sequence[LayerInfo]) -> list[str]:
    """Every tensor a static config of some layer may quantize, in a stable order."""
    seen: dict[str, None] = {}
    for layer in layers:
        if layer.supports_activations:
            for tensor in (*layer.act_inputs, layer.output):
                seen.setdefault(tensor, None)
    return list(seen)



def uniform_config(layers: Sequence[LayerInfo], cfg: LayerConfig, *, calibration: CalibMethod = CalibMethod.MINMAX,
                   scale_rule: ScaleRule = ScaleRule.FLOAT) -> QuantConfig:
    """``cfg`` on every layer, fitted to what each layer supports (see :func:`fit_to_layer`)."""
    fitted = {layer.name: fit_to_layer(cfg, layer) for layer in layers}
    return QuantConfig(layers={k: v for k, v in fitted.items() if v is not None}, calibration=calibration,
                       scale_rule=scale_rule)
