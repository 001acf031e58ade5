# Lower level: the path policy trained offline over the training preferences (t00..),
# then, per reporting preference (w00..), the online path search over the experts and
# M_λ. (The random-path baseline on its budget is a comparison method: compare.smk.)


rule train_policy:
    input:
        experts=expert_dirs(),
        data=generated_split_files("search"),
        ideal=layout.IDEAL,
        anchors=expand(layout.PARAM_MODEL, pref=TRAINING_PREFERENCES),
    output:
        policy=directory(layout.POLICY),
        log_csv=layout.RL_LOG,
        summary=layout.RL_SUMMARY,
        plot=report(
            layout.plot("rl_training"), caption="../report/rl_training.rst", category="Lower level"
        ),
    log:
        layout.log("rl/train_policy"),
    benchmark:
        layout.benchmark("train_policy")
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("train_policy")
    resources:
        **resources_for("train_policy"),
    params:
        config=config_for("train_policy"),
        anchors={pref: layout.fill(layout.PARAM_MODEL, pref=pref) for pref in TRAINING_PREFERENCES},
    script:
        "../scripts/train_policy.py"


rule search_path:
    input:
        policy=layout.POLICY,
        anchor=layout.fill(layout.PARAM_MODEL, pref="{report_pref}"),
        experts=expert_dirs(),
        data=generated_split_files("search") + generated_split_files("test"),
        ideal=layout.IDEAL,
    output:
        model=directory(layout.PATH_MODEL),
        candidates=layout.PATH_CANDIDATES,
        recipe=layout.PATH_RECIPE,
        summary=layout.PATH_SUMMARY,
    log:
        layout.log("paths/{report_pref}/search"),
    benchmark:
        layout.benchmark("search_path_{report_pref}")
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("search_path")
    resources:
        **resources_for("search_path"),
    params:
        config=config_for("search_path"),
        weights=report_pref_weights,
        max_shard_size=max_shard_size(),
    script:
        "../scripts/search_path.py"
