# Stage "geometry": exact streaming Gram blocks of task vectors, the distance table, summaries, figures.


rule gram_block:
    input:
        rows=lambda w: vector_files(BLOCKS[int(w.i)]),
        cols=lambda w: vector_files(BLOCKS[int(w.j)]),
        pretrained_vector="results/weights/pretrained.npy",
        pretrained="results/weights/pretrained.json",
        code=code("geometry"),
    output:
        "results/geometry/gram/block_{i}_{j}.parquet",
    params:
        rows=lambda w: [f"results/weights/{m}.json" for m in BLOCKS[int(w.i)]],
        cols=lambda w: [f"results/weights/{m}.json" for m in BLOCKS[int(w.j)]],
        cache=GRAM_CACHE,
        exact_threshold=config["geometry"]["exact_threshold"],
        memory_mb=config["geometry"]["memory_mb"],
    resources:
        mem_mb=lambda w: int(config["geometry"]["memory_mb"]) + 1024,
    log:
        "logs/geometry/gram_block_{i}_{j}.log",
    benchmark:
        "logs/benchmarks/gram_block/{i}_{j}.tsv"
    shell:
        "python -m workflow_scripts.geometry block --models {params.rows} --columns {params.cols} "
        "--pretrained {input.pretrained} --cache {params.cache} "
        "--exact-threshold {params.exact_threshold} --memory-mb {params.memory_mb} --out {output} > {log} 2>&1"


rule distances:
    input:
        blocks=[f"results/geometry/gram/block_{i}_{j}.parquet" for i, j in BLOCK_PAIRS],
        models=[f"results/weights/{m}.json" for m in MODEL_IDS],
        pretrained="results/weights/pretrained.json",
        code=code("geometry"),
    output:
        table="results/geometry/distances.parquet",
        cache=GRAM_CACHE,
    log:
        "logs/geometry/distances.log",
    shell:
        "python -m workflow_scripts.geometry distances --blocks {input.blocks} --models {input.models} "
        "--pretrained {input.pretrained} --out {output.table} --cache-out {output.cache} > {log} 2>&1"


rule geometry_summary:
    input:
        distances="results/geometry/distances.parquet",
        code=code("geometry_summary"),
    output:
        summary="results/geometry/summary.parquet",
        clusters="results/geometry/clusters.parquet",
        projection="results/geometry/projection.parquet",
        report="results/geometry/summary.md",
    params:
        seed=config["geometry"]["seed"],
        perplexity=(
            f"--perplexity {config['geometry']['tsne_perplexity']}"
            if config["geometry"]["tsne_perplexity"]
            else ""
        ),
    log:
        "logs/geometry/summary.log",
    shell:
        "python -m workflow_scripts.geometry_summary --distances {input.distances} --summary {output.summary} "
        "--clusters {output.clusters} --projection {output.projection} --report {output.report} "
        "--seed {params.seed} {params.perplexity} > {log} 2>&1"


rule geometry_figures:
    input:
        distances="results/geometry/distances.parquet",
        projection="results/geometry/projection.parquet",
        code=code("figures"),
    output:
        [
            report(f"results/geometry/figures/{name}.png", caption=f"report/{name}.rst", category="Geometry")
            for name in ("pca", "tsne", "similarity_heatmap", "relations_boxplot")
        ],
    params:
        out_dir=lambda w, output: os.path.dirname(output[0]),
    log:
        "logs/geometry/figures.log",
    shell:
        "python -m workflow_scripts.figures geometry --distances {input.distances} "
        "--projection {input.projection} --out-dir {params.out_dir} > {log} 2>&1"
