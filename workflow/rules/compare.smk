# The comparison methods of the paper's tables, on HM3's preferences, splits and
# budget: one rule each, made from its entry in hm3.compare.registry (rule name,
# inputs, outputs, params, log, benchmark); workflow/scripts/compare.py runs the
# method's `rule_job`. `compare.methods` in the config picks which run; the front rule
# reads them all.


for method in registry.METHODS:

    rule:
        name:
            method.rule
        input:
            **compare_inputs(method),
        output:
            **compare_rule_outputs(method),
        log:
            method.log,
        benchmark:
            method.benchmark_file
        conda:
            "../../envs/hm3.yaml"
        threads: threads_for(method.rule)
        resources:
            **resources_for(method.rule),
        params:
            **compare_params(method),
        script:
            "../scripts/compare.py"


# HM3 without its parameter level trains its own policy, as the paper's ablation does:
# HM3's offline training (same script, keys and seed) with every training λ's pool
# anchored on the base instead of that λ's searched merge.
rule train_no_param_policy:
    input:
        experts=expert_dirs(),
        base=layout.fill(layout.MODEL, model=BASE),
        data=generated_split_files("search"),
        ideal=layout.IDEAL,
    output:
        policy=directory(layout.NO_PARAM_POLICY),
        log_csv=layout.NO_PARAM_RL_LOG,
        summary=layout.NO_PARAM_RL_SUMMARY,
        plot=layout.NO_PARAM_RL_PLOT,
    log:
        layout.log("compare/hm3-no-param/train_policy"),
    benchmark:
        layout.benchmark("train_no_param_policy")
    conda:
        "../../envs/hm3.yaml"
    threads: threads_for("train_no_param_policy")
    resources:
        **resources_for("train_no_param_policy"),
    params:
        config=config_for("train_no_param_policy"),
        anchors={pref: layout.fill(layout.MODEL, model=BASE) for pref in TRAINING_PREFERENCES},
    script:
        "../scripts/train_policy.py"
