# Stage "finetune": one job per (dataset, seed), and a table of every model's accuracies.


rule finetune:
    input:
        base=BASE_FILES,
        data=expand("resources/datasets/{{dataset}}/{file}", file=DATASET_FILES),
        code=code("finetune"),
    output:
        weights="results/models/{dataset}-s{seed}/model.safetensors",
        config="results/models/{dataset}-s{seed}/config.json",
        metrics="results/models/{dataset}-s{seed}/metrics.json",
        train_log="results/models/{dataset}-s{seed}/train_log.parquet",
    params:
        settings=lambda w: json.dumps(finetune_settings(w.dataset), sort_keys=True),
        base_dir=lambda w, input: os.path.dirname(input.base[0]),
        data_dir=lambda w, input: os.path.dirname(input.data[0]),
        out_dir=lambda w, output: os.path.dirname(output.weights),
    threads: config["finetune"]["threads"]
    resources:
        gpu=config["finetune"]["gpus"],
    log:
        "logs/finetune/{dataset}-s{seed}.log",
    benchmark:
        "logs/benchmarks/finetune/{dataset}-s{seed}.tsv"
    shell:
        "python -m workflow_scripts.finetune --base-dir {params.base_dir} --dataset-dir {params.data_dir} "
        "--seed {wildcards.seed} --settings {params.settings:q} --threads {threads} "
        "--out-dir {params.out_dir} > {log} 2>&1"


rule finetune_metrics:
    input:
        metrics=expand("results/models/{model_id}/metrics.json", model_id=MODEL_IDS),
        code=code("finetune"),
    output:
        "results/models/metrics.parquet",
    log:
        "logs/finetune/metrics.log",
    shell:
        "python -m workflow_scripts.finetune --summarise {input.metrics} --out {output} > {log} 2>&1"
