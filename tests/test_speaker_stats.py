"""Speaker-statistics protocols (all / none / random:K / neutral): enrolment sets, the population prior and its
shrinkage, the speaker subspace, odd cases (fewer clips than K, no neutral clip), the dataset's training pools and
the evaluator's protocol scores. Precision: float64 statistics, float32 model inputs."""
import numpy as np
import pytest
import torch

from fastclap.data.speaker_norm import SpeakerNormError, speaker_standardise
from fastclap.data.speaker_stats import Prior, Protocol, reference_sets, standardise


def _corpus(rng, n_speakers=4, per=(6, 9, 3, 12), d=5):
    speakers, labels = [], []
    words = ["anger", "neutral", "happiness", "sadness"]
    for s in range(n_speakers):
        for j in range(per[s]):
            speakers.append(f"s{s}")
            labels.append(words[j % 4])
    order = rng.permutation(len(speakers))
    speakers = [speakers[i] for i in order]
    labels = [labels[i] for i in order]
    offsets = {s: rng.normal(size=d) * 4 for s in set(speakers)}
    x = np.stack([offsets[s] + rng.normal(size=d) * rng.uniform(0.5, 2) for s in speakers])
    return x, speakers, labels


@pytest.mark.parametrize("text,want", [("all", "all"), ("NONE", "none"), ("neutral", "neutral"),
                                       ("random:8", "random:8"), (" random:1 ", "random:1")])
def test_protocol_names_round_trip(text, want):
    assert Protocol.parse(text).name == want


@pytest.mark.parametrize("bad", ["random", "random:0", "random:-2", "random:x", "half", ""])
def test_bad_protocols_name_the_argument(bad):
    with pytest.raises(ValueError, match="--speaker-stats"):
        Protocol.parse(bad)


def test_reference_sets_of_each_protocol_and_the_odd_cases():
    rng = np.random.default_rng(3)
    x, speakers, labels = _corpus(rng)
    labels = ["anger" if s == "s2" else lab for s, lab in zip(speakers, labels)]  # s2: no neutral clip
    by = {s: sorted(i for i, t in enumerate(speakers) if t == s) for s in set(speakers)}
    sets, notes = reference_sets(Protocol("all"), speakers, labels)
    assert {s: v.tolist() for s, v in sets.items()} == by
    sets, _ = reference_sets(Protocol("none"), speakers, labels)
    assert all(v.size == 0 for v in sets.values())
    sets, notes = reference_sets(Protocol("neutral"), speakers, labels)
    assert notes["no_neutral"] == ["s2"] and sets["s2"].size == 0
    for s, rows in sets.items():
        assert all(labels[i] == "neutral" and speakers[i] == s for i in rows)
        assert len(rows) == sum(labels[i] == "neutral" for i in by[s])
    sets, notes = reference_sets(Protocol("random", 8), speakers, labels, np.random.default_rng(0))
    assert notes["short"] == {"s0": 6, "s2": 3}  # fewer clips than K: all of them
    assert sets["s0"].tolist() == by["s0"] and sets["s2"].tolist() == by["s2"]
    for s in ("s1", "s3"):
        assert len(set(sets[s].tolist())) == 8 and set(sets[s].tolist()) <= set(by[s])
    other, _ = reference_sets(Protocol("random", 8), speakers, labels, np.random.default_rng(1))
    assert other["s3"].tolist() != sets["s3"].tolist()  # a new draw, a new enrolment set
    with pytest.raises(ValueError, match="random generator"):
        reference_sets(Protocol("random", 2), speakers, labels)


def test_every_clip_and_no_prior_weight_is_todays_speaker_normalisation():
    rng = np.random.default_rng(5)
    x, speakers, labels = _corpus(rng, d=7)
    prior = Prior.fit(x, speakers)
    sets, _ = reference_sets(Protocol("all"), speakers, labels)
    np.testing.assert_allclose(standardise(x, speakers, sets, prior), speaker_standardise(x, speakers),
                               rtol=1e-5, atol=1e-5)


def test_prior_is_the_mean_of_speaker_means_and_the_pooled_within_speaker_sd():
    rng = np.random.default_rng(6)
    x, speakers, _ = _corpus(rng, d=4)
    prior = Prior.fit(x, speakers)
    ids = sorted(set(speakers))
    means = [x[[t == s for t in speakers]].mean(0) for s in ids]
    resid = np.concatenate([x[[t == s for t in speakers]] - m for s, m in zip(ids, means)])
    np.testing.assert_allclose(prior.mean, np.mean(means, axis=0), rtol=1e-12)
    np.testing.assert_allclose(prior.sd, np.sqrt(np.mean(resid ** 2, axis=0)), rtol=1e-12)


@pytest.mark.parametrize("n,kappa", [(0, 0.0), (1, 0.0), (1, 2.0), (3, 0.0), (5, 2.5)])
def test_shrinkage_towards_the_prior(n, kappa):
    rng = np.random.default_rng(n + 10 * int(kappa))
    prior = Prior(rng.normal(size=3), rng.uniform(0.5, 2, size=3))
    ref = rng.normal(size=(n, 3)) * 3 + 1
    mean, sd = prior.stats(ref, kappa)
    if n == 0:
        np.testing.assert_allclose(mean, prior.mean)
        np.testing.assert_allclose(sd, prior.sd)
        return
    m_want = (ref.sum(0) + kappa * prior.mean) / (n + kappa)
    np.testing.assert_allclose(mean, m_want, rtol=1e-12)
    sd_want = prior.sd if n < 2 else np.sqrt((n * ref.var(0) + kappa * prior.sd ** 2) / (n + kappa))
    np.testing.assert_allclose(sd, sd_want, rtol=1e-12)


def test_speaker_subspace_projection_removes_training_speaker_offsets():
    rng = np.random.default_rng(8)
    d, n_speakers = 10, 5
    basis = np.linalg.qr(rng.normal(size=(d, 2)))[0]  # speakers differ only within a 2-d subspace
    speakers = [f"s{k}" for k in range(n_speakers) for _ in range(30)]
    offsets = {f"s{k}": basis @ rng.normal(size=2) * 10 for k in range(n_speakers)}
    x = np.stack([offsets[s] + rng.normal(size=d) for s in speakers])
    prior = Prior.fit(x, speakers, nap_rank=2)
    assert prior.nap.shape == (d, 2)
    np.testing.assert_allclose(prior.nap.T @ prior.nap, np.eye(2), atol=1e-10)
    z = prior.apply(x, prior.mean, prior.sd)  # no speaker statistics at all ("none")
    spread = np.std([z[[t == s for t in speakers]].mean(0) for s in set(speakers)], axis=0).max()
    plain = Prior.fit(x, speakers).apply(x, prior.mean, prior.sd)
    spread_plain = np.std([plain[[t == s for t in speakers]].mean(0) for s in set(speakers)], axis=0).max()
    assert spread < 0.3 < 2 < spread_plain  # offsets of several sd removed down to the noise of 30-clip means
    with pytest.raises(SpeakerNormError, match="nap rank 5 needs more than 5 training speakers"):
        Prior.fit(x, speakers, nap_rank=5)


def _posterior_by_conditioning(x, ref, mu0, sd0, tau):
    """E[(x - mu_s) / sd0 | x, ref] per dimension by conditioning the joint Gaussian of (mu_s, x, ref) directly."""
    out = np.empty_like(x)
    n = ref.shape[0]
    for j in range(x.size):
        m = n + 1  # observed: x then the n reference clips, all sharing mu_s
        cov_obs = np.full((m, m), tau[j] ** 2) + np.eye(m) * sd0[j] ** 2
        cov_mu_obs = np.full(m, tau[j] ** 2)
        obs = np.concatenate([[x[j]], ref[:, j]]) - mu0[j]
        mu_s = mu0[j] + cov_mu_obs @ np.linalg.solve(cov_obs, obs)
        out[j] = (x[j] - mu_s) / sd0[j]
    return out


@pytest.mark.parametrize("n,kappa", [(0, 0.0), (1, 0.0), (1, 3.0), (6, 1e12)])
def test_posterior_estimate_equals_gaussian_conditioning(n, kappa):
    rng = np.random.default_rng(40 + n)
    d = 6
    mu0, sd0, tau = rng.normal(size=d), rng.uniform(0.5, 2, size=d), rng.uniform(0.1, 8, size=d)
    prior = Prior(mu0, sd0, between=tau)
    mu_s = mu0 + tau * rng.normal(size=d)
    ref = mu_s + sd0 * rng.normal(size=(n, d))
    x = mu_s + sd0 * rng.normal(size=d)
    mean, sd = prior.stats(ref, kappa)  # n < 2, or a huge prior weight on the variance: the sd is sd0
    np.testing.assert_allclose((x - mean) / sd, _posterior_by_conditioning(x, ref, mu0, sd0, tau), rtol=1e-9,
                               atol=1e-12)


def test_posterior_estimate_damps_what_one_clip_cannot_tell_and_tends_to_speaker_normalisation():
    rng = np.random.default_rng(12)
    speakers = [f"s{k}" for k in range(400) for _ in range(20)]
    tau = np.array([0.5, 1.0, 10.0])  # between-speaker sd per dimension; the within-speaker sd is 1
    means = {s: tau * rng.normal(size=3) for s in set(speakers)}
    x = np.stack([means[s] + rng.normal(size=3) for s in speakers])
    prior = Prior.fit(x, speakers, posterior=True)
    np.testing.assert_allclose(prior.between, tau, rtol=0.1)  # fitted less the means' own sampling noise
    assert Prior.fit(x, speakers).between is None
    plugin = Prior(prior.mean, prior.sd)
    _, sd_none = prior.stats(x[:0])
    np.testing.assert_allclose(prior.sd / sd_none, prior.sd ** 2 / (prior.sd ** 2 + prior.between ** 2), rtol=1e-12)
    rows = np.arange(20)  # every clip of speaker s0 (the first 20 rows)
    m_post, s_post = prior.stats(x[rows])
    m_plug, s_plug = plugin.stats(x[rows])
    np.testing.assert_allclose(m_post[2], m_plug[2], atol=0.01)  # tau >> sd: the clips' own mean
    assert abs(s_post[2] / s_plug[2] - 1) < 0.1
    # the estimate's error against the true speaker-normalised value is smaller than the plug-in prior's, n = 0
    truth = np.stack([(x[i] - means[s]) for i, s in enumerate(speakers)])
    err_post = np.mean((prior.apply(x, *prior.stats(x[:0])) - truth) ** 2, axis=0)
    err_plug = np.mean((plugin.apply(x, *plugin.stats(x[:0])) - truth) ** 2, axis=0)
    assert err_post[2] < 1.5 < 50 < err_plug[2]
    with pytest.raises(SpeakerNormError, match="posterior estimate needs at least 2 training speakers"):
        Prior.fit(x[:20], speakers[:20], posterior=True)


def test_clip_zeroes_dimensions_constant_in_training_and_bounds_the_rest():
    rng = np.random.default_rng(21)
    x, speakers, _ = _corpus(rng, d=6)
    x[:, 2] = 0.0  # a unit no training clip activates (a GE2E ReLU unit)
    x[:, 4] = 7.5  # and one constant at another value
    plain, clipped = Prior.fit(x, speakers), Prior.fit(x, speakers, clip=3.0)
    assert clipped.live.tolist() == [True, True, False, True, False, True] and plain.clip is None
    new = rng.normal(size=(5, 6)) * 4  # clips of a new speaker: the constant units now vary
    z_plain = plain.apply(new, plain.mean, plain.sd)
    assert np.abs(z_plain[:, 2]).min() > 1e4  # standardised by the EPS floor: what the clip is for
    z = clipped.apply(new, clipped.mean, clipped.sd)
    np.testing.assert_array_equal(z[:, [2, 4]], 0.0)
    live = [0, 1, 3, 5]
    np.testing.assert_allclose(z[:, live], np.clip(z_plain[:, live], -3, 3), rtol=1e-6)
    assert np.abs(z).max() <= 3.0 and (np.abs(z[:, live]) == 3.0).any()  # some values were bounded
    with pytest.raises(SpeakerNormError, match="clip bound must be > 0"):
        Prior.fit(x, speakers, clip=0.0)


def test_prior_errors_name_the_problem():
    with pytest.raises(SpeakerNormError, match="one speaker per row"):
        Prior.fit(np.ones((3, 2)), ["a", "b"])
    with pytest.raises(SpeakerNormError, match="NaN or inf"):
        Prior.fit(np.array([[1.0], [np.inf]]), ["a", "b"])
    with pytest.raises(KeyError, match="'zz'"):
        standardise(np.ones((1, 2)), ["zz"], {}, Prior(np.zeros(2), np.ones(2)))


def _tiny_model(**audio_kw):
    from fastclap.config import AudioTowerConfig, ModelConfig, TextTowerConfig
    from fastclap.model import CLAPModel

    text = TextTowerConfig(hf_config={"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1,
                                      "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 30522},
                           tokenizer="builtin:all-MiniLM-L6-v2")
    audio = AudioTowerConfig(kind="fusion", fusion=["functionals", "ge2e"], hidden=8, trainable=False, **audio_kw)
    torch.manual_seed(0)
    return CLAPModel(ModelConfig(audio=audio, text=text, embed_dim=16)).eval()


@pytest.mark.parametrize("estimate,clip", [("plugin", None), ("posterior", None), ("plugin", 1.5)])
def test_protocol_scores_match_a_hand_built_batch_and_all_matches_the_evaluator(estimate, clip):
    pytest.importorskip("opensmile")
    from data_helpers import prepared_sample
    from fastclap.data.dataset import fit_priors, utterance_features
    from fastclap.engine.data import ge2e_windows
    from fastclap.evaluation.metrics import classification_metrics, zero_shot_predict
    from fastclap.evaluation.protocols import score_protocols
    from fastclap.evaluation.prompts import ClassPrompts
    from fastclap.evaluation.runner import encode_texts, evaluate_model

    prep = prepared_sample()[0]
    model = _tiny_model(speaker_norm=True, speaker_prior_weight=1.5, speaker_nap=1, speaker_stats_estimate=estimate,
                        speaker_norm_clip=clip)
    res = score_protocols(model, prep, "test", ["all", "random:2", "none"], draws=3, seed=4)
    assert [r["protocol"] for r in res["protocols"]] == ["all", "random:2", "none"]
    assert len(res["protocols"][1]["uars"]) == 3 and len(res["protocols"][2]["uars"]) == 1
    # independent path: the dataset-free statistics of one random:2 draw, built by hand
    feats = utterance_features(prep, ge2e_windows(prep, None, 1.0))
    priors = fit_priors(prep, feats, 1, estimate, clip)
    assert all((p.between is not None) == (estimate == "posterior") for p in priors.values())
    speakers = [r.speaker for r in prep.rows]
    draw = np.random.default_rng([4, 1])
    picks = {}
    for s in sorted(set(speakers)):
        rows = np.array([i for i, t in enumerate(speakers) if t == s])
        picks[s] = np.sort(draw.choice(rows, size=min(2, rows.size), replace=False))
    idx = [int(i) for i in prep.split_indices("test")]
    batch = {}
    for key, x in feats.items():
        rows = []
        for i in idx:
            mean, sd = priors[key].stats(x[picks[speakers[i]]], 1.5)
            z = (x[i] - mean) / sd
            z = z - priors[key].nap @ (priors[key].nap.T @ z)
            if clip is not None:  # units that no training clip moves carry nothing; the rest bounded
                train = x[prep.split_indices("train")]
                z = np.clip(np.where((train == train[0]).all(0), 0.0, z), -clip, clip)
            rows.append(z)
        batch[key] = torch.tensor(np.stack(rows), dtype=torch.float32)
    labels = [prep.rows[i].emotion for i in idx]
    prompts = ClassPrompts.build(sorted(set(labels)), ("emotion is {label}",))
    with torch.no_grad():
        pred = zero_shot_predict(model.encode_audio(batch), prompts.encode(lambda t: encode_texts(model, t)))
    want = classification_metrics([prompts.index(l) for l in labels], pred.tolist(), prompts.classes)["uar"]
    assert res["protocols"][1]["uars"][1] == pytest.approx(want)
    full = evaluate_model(model, prep, "test", progress=False)  # the evaluator's "all" path (the dataset's)
    assert res["protocols"][0]["uar"] == pytest.approx(full["zero_shot"]["uar"])


def test_a_model_without_statistics_scores_every_protocol_alike_and_none_needs_a_train_split():
    pytest.importorskip("opensmile")
    import dataclasses

    from data_helpers import prepared_sample
    from fastclap.evaluation.protocols import score_protocols

    prep = prepared_sample()[0]
    res = score_protocols(_tiny_model(), prep, "test", ["none", "all", "random:4"], draws=2)
    assert not res["uses_speaker_stats"] and len({r["uar"] for r in res["protocols"]}) == 1
    no_train = dataclasses.replace(prep, rows=[dataclasses.replace(r, split="test") for r in prep.rows])
    model = _tiny_model(speaker_norm=True)
    assert score_protocols(model, no_train, "test", ["all"])["protocols"][0]["n"] == len(prep)
    with pytest.raises(ValueError, match=r"--speaker-stats none: .*population prior.*no train split"):
        score_protocols(model, no_train, "test", ["none"])
    posterior = _tiny_model(speaker_norm=True, speaker_stats_estimate="posterior")
    with pytest.raises(ValueError, match=r"speaker_stats_estimate 'posterior'.*no train split"):
        score_protocols(posterior, no_train, "test", ["all"])
    clipped = _tiny_model(speaker_norm=True, speaker_norm_clip=3.0)
    with pytest.raises(ValueError, match=r"speaker_norm_clip.*no train split"):
        score_protocols(clipped, no_train, "test", ["all"])


def test_training_items_draw_enrolment_sets_and_eval_items_follow_the_protocol():
    pytest.importorskip("opensmile")
    from data_helpers import prepared_sample
    from fastclap.data import ClapDataset
    from fastclap.data.dataset import SpeakerStatsConfig, fit_priors, utterance_features
    from fastclap.engine.data import ge2e_windows

    prep = prepared_sample()[0]
    cached = ge2e_windows(prep, None, 2.0)
    cfg = SpeakerStatsConfig(train="random", eval="none", prior_weight=2.0, nap_rank=1, pool=16)
    tr = ClapDataset(prep, "train", mode="train", input="ge2e", ge2e=cached, crop_seconds=2.0, seed=3,
                     speaker_norm=True, speaker_stats=cfg)
    feats = utterance_features(prep, cached)
    priors = fit_priors(prep, feats, 1)
    raw = prep.paraling
    seen = set()
    for k in range(0, 40, 3):
        item = tr[k]
        i, spk = int(item["index"]), item["speaker"]
        pool = tr.pools["paraling"][1][spk]
        assert len(pool) == 16
        hits = [j for j, (m, s) in enumerate(pool)
                if np.allclose(priors["paraling"].apply(raw(i), m, s), item["paraling"].numpy(), atol=1e-5)]
        assert hits  # standardised with one of the speaker's enrolment sets
        seen.add((spk, hits[0]))
        assert tr[k]["paraling"].equal(item["paraling"])  # the same item, the same draw
    assert len(seen) > 3
    ev = ClapDataset(prep, "test", mode="eval", input="ge2e", ge2e=cached, speaker_norm=True, speaker_stats=cfg)
    i = int(ev.indices[0])
    want = priors["ge2e"].apply(feats["ge2e"][i], priors["ge2e"].mean, priors["ge2e"].sd)  # "none": the prior
    np.testing.assert_allclose(ev[0]["ge2e"].numpy(), want, atol=1e-6)


@pytest.mark.parametrize("share", [0.0, 0.35, 1.0])
def test_the_share_of_prior_only_training_enrolment_sets(share):
    pytest.importorskip("opensmile")
    from data_helpers import prepared_sample
    from fastclap.data.dataset import SpeakerStatsConfig, speaker_stat_pools

    prep = prepared_sample()[0]
    pool = 400
    cfg = SpeakerStatsConfig(train="random", prior_weight=2.0, pool=pool, none_share=share)
    prior, sets = speaker_stat_pools(prep, None, cfg, "train", seed=5)["paraling"]
    for spk, stats in sets.items():
        assert len(stats) == pool
        empty = [m is prior.mean and s is prior.sd for m, s in stats]  # n = 0: the prior itself
        # a non-empty set moves the mean off the prior's (shrinkage with kappa = 2 keeps a share n / (n + 2))
        assert all(e or not np.allclose(m, prior.mean) for e, (m, _) in zip(empty, stats))
        frac = float(np.mean(empty))
        sd = np.sqrt(share * (1 - share) / pool)
        assert abs(frac - share) <= 4 * sd + 1e-12, (spk, frac)
    default = speaker_stat_pools(prep, None, SpeakerStatsConfig(train="random", pool=pool), "train", seed=5)
    frac = np.mean([m is default["paraling"][0].mean for st in default["paraling"][1].values() for m, _ in st])
    assert abs(frac - 1 / 7) < 4 * np.sqrt(1 / 7 * 6 / 7 / pool)  # the default: every size equally likely


@pytest.mark.parametrize("key,value", [("speaker_stats_valid", "random:0"), ("speaker_stats_valid", "half"),
                                       ("speaker_prior_weight", -1.0), ("speaker_nap", -2),
                                       ("speaker_stats_train", "some"), ("speaker_stats_none_share", 1.5),
                                       ("speaker_stats_none_share", -0.1), ("speaker_stats_estimate", "mle"),
                                       ("speaker_norm_clip", 0.0)])
def test_config_names_a_bad_speaker_statistics_key(key, value):
    from fastclap.config import FastClapConfig, from_dict, validate

    audio = {"kind": "fusion", "fusion": ["functionals", "ge2e"], "trainable": False, "speaker_norm": True,
             key: value}
    with pytest.raises(ValueError, match=rf"fastclap\.model\.audio\.{key}"):
        validate(from_dict(FastClapConfig, {"data": {"input": "ge2e"}, "model": {"audio": audio}}))


def test_pooled_protocols_equal_scoring_the_concatenated_predictions_per_draw():
    from fastclap.evaluation.metrics import classification_metrics
    from fastclap.evaluation.protocols import _row, pooled_protocols

    rng = np.random.default_rng(2)
    classes_a, classes_b = ["anger", "neutral", "sadness"], ["anger", "happiness", "neutral", "sadness"]
    parts, pairs = [], [[], []]  # per draw: (truth, pred) names of both parts
    for classes in (classes_a, classes_b):
        runs = []
        for d in range(2):
            t = rng.integers(0, len(classes), 25).tolist()
            p = rng.integers(0, len(classes), 25).tolist()
            runs.append(classification_metrics(t, p, classes))
            pairs[d] += [(classes[a], classes[b]) for a, b in zip(t, p)]
        parts.append({"uses_speaker_stats": True, "deployable": "random:8",
                      "protocols": [_row(Protocol("random", 2), runs, {"short": {"x": 1}, "no_neutral": []})]})
    got = pooled_protocols(parts)["protocols"][0]
    every = sorted(set(classes_a) | set(classes_b))
    for d in range(2):
        want = classification_metrics([every.index(a) for a, _ in pairs[d]], [every.index(b) for _, b in pairs[d]],
                                      every)["uar"]
        assert got["uars"][d] == pytest.approx(want)
    assert got["uar"] == pytest.approx(np.mean(got["uars"])) and got["notes"]["short"] == {"x": 1}


def test_paired_difference_to_the_reference_by_hand():
    from scipy import stats

    from fastclap.experiment.protocol_report import paired_to_reference

    zs = {0: 0.61, 1: 0.55, 2: 0.70, 3: 0.58}
    d = np.array([0.61, 0.55, 0.70, 0.58]) - 0.6
    got = paired_to_reference(zs, 0.6)
    h = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert got["n"] == 4 and got["mean"] == pytest.approx(d.mean()) and got["sd"] == pytest.approx(d.std(ddof=1))
    assert got["ci95"] == pytest.approx((d.mean() - h, d.mean() + h))
    assert paired_to_reference({0: 0.5}, 0.4)["ci95"] is None


def test_supervised_speaker_scaling_under_a_protocol_keeps_train_clips_and_rescales_the_others():
    pytest.importorskip("opensmile")
    from data_helpers import prepared_sample
    from fastclap.evaluation.supervised import _speaker_scaled, linear_probe

    prep = prepared_sample()[0]
    raw = np.stack([prep.paraling(i) for i in range(len(prep))]).astype(np.float64)
    speakers = [r.speaker for r in prep.rows]
    every = speaker_standardise(raw, speakers)
    np.testing.assert_allclose(_speaker_scaled(prep, raw, "all", 0), every)
    got = _speaker_scaled(prep, raw, "none", 0)
    train = [int(i) for i in prep.split_indices("train")]
    np.testing.assert_allclose(got[train], every[train])
    tr_spk = [speakers[i] for i in train]
    means = [raw[[i for i in train if speakers[i] == s]].mean(0) for s in sorted(set(tr_spk))]
    resid = np.concatenate([raw[[i for i in train if speakers[i] == s]] - m for s, m in zip(sorted(set(tr_spk)), means)])
    test = [int(i) for i in prep.split_indices("test")]
    want = (raw[test] - np.mean(means, 0)) / np.maximum(np.sqrt((resid ** 2).mean(0)), 1e-6)
    np.testing.assert_allclose(got[test], want, rtol=1e-5, atol=1e-5)
    res = linear_probe(prep, "egemaps", "dataset", c_grid=(1.0,), scaling="speaker", speaker_stats="random:2",
                       stats_seed=1)
    assert 0.0 <= res["test"]["uar"] <= 1.0


def test_protocol_markdown_and_plot_from_runs(tmp_path):
    from fastclap.experiment.protocol_report import plot_against_k, protocol_markdown

    protocols = ["none", "random:8", "all"]

    def block(base):
        return {p: {"uar": base + 0.01 * k, "uar_sd": 0.0, "uars": [base + 0.01 * k]} for k, p in enumerate(protocols)}

    runs = [{"setting": "emodb+ravdess", "loss": "smoothclap", "seed": s,
             "speaker_stats": {"test": block(0.5 + 0.02 * s), "valid": block(0.6),
                               "test_by_corpus": {"emodb": block(0.7), "ravdess": block(0.4)}}} for s in range(3)]
    refs = [{"setting": "emodb+ravdess", "features": "egemaps", "scaling": "train", "test": {"uar": 0.52},
             "test_by_corpus": {"emodb": {"uar": 0.8}, "ravdess": {"uar": 0.3}}}]
    stats_refs = [{"setting": "emodb+ravdess", "protocol": p, "uars": [0.4, 0.5], "by_corpus": {"emodb": [0.6]}}
                  for p in protocols]
    md = protocol_markdown(runs, ["emodb+ravdess"], ["smoothclap"], protocols, refs, stats_refs)
    assert "| emodb+ravdess: emodb test speakers | SmoothCLAP (β=0.1, γ=0.5) | random:8 | 3 | -9.0 |" in md
    assert "| emodb+ravdess: ravdess test speakers | SmoothCLAP (β=0.1, γ=0.5) | none | 3 | +10.0 |" in md
    assert "| emodb+ravdess | zero-shot SmoothCLAP (β=0.1, γ=0.5) | 52.0 ± 2.0 | 53.0 ± 2.0 | 54.0 ± 2.0 |" in md
    plot_against_k(runs, ["emodb+ravdess"], "smoothclap", refs, stats_refs, str(tmp_path / "k.png"))
    assert (tmp_path / "k.png").stat().st_size > 1000


def test_evaluate_cli_names_a_bad_protocol_and_draws(capsys, tmp_path):
    from fastclap.evaluate import main

    assert main(["--checkpoint", str(tmp_path / "none"), "--prepared", str(tmp_path), "--speaker-stats", "all",
                 "random:0"]) == 2
    assert "error: --speaker-stats: 'random:0' is not a protocol" in capsys.readouterr().err
    assert main(["--checkpoint", str(tmp_path / "none"), "--prepared", str(tmp_path), "--draws", "0"]) == 2
    assert "error: --draws must be >= 1, got 0" in capsys.readouterr().err


def test_input_range_report_of_a_prepared_corpus():
    pytest.importorskip("opensmile")
    import re

    from benchmarks.speaker_input_range import report
    from data_helpers import prepared_sample

    prep = prepared_sample()[0]
    lines = report(str(prep.out_dir), 3.0)
    bounded = [ln for ln in lines if "| bound 3 |" in ln]
    assert bounded and len(bounded) == len([ln for ln in lines if "| no bound |" in ln])
    assert all(float(re.search(r"max ([0-9.]+)", ln).group(1)) <= 3.0 for ln in bounded)
    assert any("test clips' mean offset" in ln for ln in lines) == (prep.split_indices("test").size > 0)


def test_the_trainer_builds_its_datasets_with_the_configured_estimate_and_bound(tmp_path, monkeypatch):
    pytest.importorskip("opensmile")
    from data_helpers import prepared_sample
    from fastclap.config import FastClapConfig, from_dict
    from fastclap.engine import data as engine_data

    prep = prepared_sample()[0]
    monkeypatch.setattr(engine_data, "_ensure_prepared", lambda c, out, rank: prep)
    audio = {"kind": "functionals", "speaker_norm": True, "speaker_stats_train": "random",
             "speaker_stats_none_share": 0.5, "speaker_stats_estimate": "posterior", "speaker_norm_clip": 0.5}
    cfg = from_dict(FastClapConfig, {"data": {"corpora": [{"corpus": "sample"}], "input": "functionals"},
                                     "model": {"audio": audio}})
    corpora = engine_data.build_corpora(cfg, str(tmp_path), 0)
    checked = 0
    for ds in (corpora.train, corpora.eval):
        for part in getattr(ds, "datasets", [ds]):
            checked += 1
            prior = part.pools["paraling"][0]
            assert prior.clip == 0.5 and prior.between is not None  # the config reached the statistics
            x = torch.stack([part[k]["paraling"] for k in range(min(len(part), 12))])
            assert x.abs().max() <= 0.5 and (x.abs() == 0.5).any()
    assert checked >= 2  # the training and the validation set


def test_the_trainer_reads_ge2e_windows_at_the_configured_volume(tmp_path, monkeypatch):
    """config model.audio.ge2e_volume -> engine/data.py -> the window cache of that setting."""
    pytest.importorskip("opensmile")
    from data_helpers import prepared_sample
    from fastclap.config import FastClapConfig, from_dict
    from fastclap.engine import data as engine_data

    prep = prepared_sample()[0]
    monkeypatch.setattr(engine_data, "_ensure_prepared", lambda c, out, rank: prep)
    asked = []

    def windows(prepared, weights, crop_seconds, rank=0, volume="raise"):
        asked.append(volume)
        raise StopIteration  # the datasets themselves are not the point here

    monkeypatch.setattr(engine_data, "ge2e_windows", windows)
    for volume in ("fixed", "raise"):
        audio = {"kind": "fusion", "fusion": ["functionals", "ge2e"], "trainable": False, "ge2e_volume": volume}
        cfg = from_dict(FastClapConfig, {"data": {"corpora": [{"corpus": "sample"}], "input": "ge2e"},
                                         "model": {"audio": audio}})
        with pytest.raises(StopIteration):
            engine_data.build_corpora(cfg, str(tmp_path), 0)
    assert asked == ["fixed", "raise"]


def test_clip_levels_measures_silence_and_level_of_a_known_clip():
    """fp64. benchmarks/clip_levels.py on a synthetic clip: 0.5 s of silence, 1 s of a sine at amplitude 0.1
    (-23.0 dBFS RMS, its every frame too), 0.25 s of silence; silence found to a frame, levels to 0.1 dB."""
    pytest.importorskip("librosa")
    from benchmarks.clip_levels import clip_levels

    sr = 16000
    tone = 0.1 * np.sin(2 * np.pi * 220.0 * np.arange(sr) / sr)
    wav = np.concatenate([np.zeros(sr // 2), tone, np.zeros(sr // 4)])
    dur, lead, trail, loudest, rms = clip_levels(wav, 40.0)
    assert dur == pytest.approx(1.75)
    assert lead == pytest.approx(0.5, abs=0.026) and trail == pytest.approx(0.25, abs=0.026)
    assert loudest == pytest.approx(20 * np.log10(0.1 / np.sqrt(2)), abs=0.1)
    assert rms == pytest.approx(20 * np.log10(0.1 / np.sqrt(2) * np.sqrt(1 / 1.75)), abs=0.1)


def test_the_evaluator_reads_ge2e_windows_with_the_models_weights_and_volume(monkeypatch):
    """model.audio.path and ge2e_volume -> fastclap.evaluation.runner.model_ge2e_windows (the evaluator's embedding
    pass and its protocol scoring) -> the window cache of that setting, full clips."""
    import types

    from fastclap.config import AudioTowerConfig
    from fastclap.engine import data as engine_data
    from fastclap.evaluation.runner import model_ge2e_windows

    asked = []
    monkeypatch.setattr(engine_data, "ge2e_windows",
                        lambda prepared, weights, crop_seconds, rank=0, volume="raise":
                        asked.append((prepared, weights, crop_seconds, volume)) or "windows")
    for volume in ("fixed", "raise"):
        audio = AudioTowerConfig(kind="fusion", fusion=["functionals", "ge2e"], trainable=False, ge2e_volume=volume)
        model = types.SimpleNamespace(cfg=types.SimpleNamespace(audio=audio))
        assert model_ge2e_windows(model, "corpus") == "windows"
    assert asked == [("corpus", None, 1.0, "fixed"), ("corpus", None, 1.0, "raise")]
