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
