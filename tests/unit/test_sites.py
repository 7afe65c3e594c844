import pytest

from layerscope.errors import UnknownSiteError
from layerscope.sites import Site, parse_sites
from layerscope.testing import tiny_bert, tiny_cnn, tiny_llama


def test_site_normalises_and_parses():
    s = Site(" blocks.3.resid_post ")
    assert s.name == "blocks.3.resid_post" and s.layer == 3 and s.component == "resid_post"
    assert Site("layers.2.mlp.post") == Site("blocks.2.mlp.post")
    assert Site("embed").layer is None and Site("embed").component == "embed"
    m = Site.module("encoder.layer.0")
    assert m.is_module and m.module_path == "encoder.layer.0" and m.layer is None
    assert Site("blocks.*.resid_post").is_pattern
    assert parse_sites(["embed", Site("embed"), "logits"]) == [Site("embed"), Site("logits")]


def test_bad_site_values():
    with pytest.raises(TypeError):
        Site("")
    with pytest.raises(TypeError):
        parse_sites(3)


def test_expand_wildcards_and_negative_layers():
    s = tiny_bert(n_layers=3)
    ad = s.adapter
    assert [x.name for x in ad.expand("blocks.*.resid_post")] == [f"blocks.{i}.resid_post" for i in range(3)]
    assert ad.expand("blocks.-1.mlp.post") == [Site("blocks.2.mlp.post")]
    assert [x.name for x in ad.expand("blocks.1.attn.*")] == ["blocks.1.attn.pattern", "blocks.1.attn.out"]


def test_unknown_site_lists_valid_names():
    ad = tiny_llama().adapter
    with pytest.raises(UnknownSiteError, match="valid sites") as e:
        ad.resolve("blocks.0.resid_middle")
    assert "resid_mid" in str(e.value)
    with pytest.raises(UnknownSiteError, match="out of range"):
        ad.resolve("blocks.7.resid_post")
    with pytest.raises(UnknownSiteError, match="no module named"):
        ad.resolve(Site.module("model.nope"))
    with pytest.raises(UnknownSiteError, match="no site matches"):
        ad.expand("blocks.0.zzz*")


def test_generic_model_has_logits_and_module_sites():
    from layerscope.models import Adapter

    ad = Adapter.for_model(tiny_cnn())
    assert ad.family == "generic"
    assert ad.site_names() == ["logits"]
    assert ad.resolve("module:3").module_name == "3"
