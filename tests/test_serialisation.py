"""Hand-written serialisation (records, cached LLM responses) equals ``dataclasses.asdict``."""

from dataclasses import asdict

from autointerp.llm.cache import decode_response, encode_response
from autointerp.llm.types import ChatResponse, PromptLogprobs, TokenLogprob, Usage
from autointerp.types import Example, FeatureRecord


def test_feature_record_to_dict_equals_asdict_and_round_trips():
    ex = Example(["a", " b"], [5, 6], [0.0, 1.5], "quantile", seq=3, start=17, quantile=2)
    rec = FeatureRecord("sae", 7, 0.01, 1.5, [ex, ex], [ex], [], [ex])
    d = rec.to_dict()
    assert d == asdict(rec) and list(d) == list(asdict(rec))
    assert d["explain"][0] is not d["explain"][1]  # copies, not the record's own lists
    d["explain"][0]["acts"].append(9.0)
    assert ex.acts == [0.0, 1.5]
    assert FeatureRecord.from_dict(d).test_top[0] == ex


def test_encode_response_equals_asdict_less_key():
    usage = Usage(prompt_tokens=3, completion_tokens=1, latency_s=0.2, cost_usd=0.1)
    chat = ChatResponse("hi", [TokenLogprob("h", -0.1, {"h": -0.1, "x": -2.0})], usage, "k", "stop")
    pl = PromptLogprobs(
        tokens=["a", "b"], offsets=[0, 1], top=[{}, {"b": -0.5}], usage=usage,
        candidates=[{}, {"1": -1.0}], exact_candidates=True, token_logprobs=[None, -0.5],
    )  # fmt: skip
    for res, kind in ((chat, "chat"), (pl, "prompt")):
        want = asdict(res)
        want.pop("key")
        assert encode_response(res) == want
        back = decode_response(kind, encode_response(res))
        assert back.usage == usage and back.key == ""
    chat.logprobs = None
    assert encode_response(chat)["logprobs"] is None
