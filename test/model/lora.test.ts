import { RlhfError } from "../../lib/errors";
import { dropoutSeed, initialLoraA, LORA_TARGET_MODULES, loraParameterNames, peftTensorName, resolveLora } from "../../lib/model/lora";

describe("resolveLora", () => {
  it("scales by alpha / r, or alpha / √r with rsLoRA, and fills PEFT's defaults", () => {
    expect(resolveLora({ r: 16, alpha: 32, targetModules: ["v_proj", "q_proj"] })).toEqual({
      r: 16, alpha: 32, dropout: 0, targets: ["q_proj", "v_proj"], useRslora: false, seed: 42, scale: 2,
    });
    expect(resolveLora({ r: 16, alpha: 32, targetLinear: true, useRslora: true, dropout: 0.05, seed: 7 })).toMatchObject({
      targets: [...LORA_TARGET_MODULES], scale: 8, dropout: 0.05, seed: 7,
    });
  });

  it("takes the union of lora_target_modules and lora_target_linear", () => {
    expect(resolveLora({ r: 1, alpha: 1, targetModules: ["down_proj"], targetLinear: true }).targets).toEqual([...LORA_TARGET_MODULES]);
  });

  it("rejects bad values with the axolotl key", () => {
    expect(() => resolveLora({ r: 1.5, alpha: 1, targetLinear: true })).toThrow(/lora_r must be an integer ≥ 1, got 1.5/);
    expect(() => resolveLora({ r: 1, alpha: 1, dropout: -0.1, targetLinear: true })).toThrow(/lora_dropout must be a number in \[0, 1\)/);
    expect(() => resolveLora({ r: 1, alpha: 1, seed: -1, targetLinear: true })).toThrow(/seed must be an integer ≥ 0/);
    expect(() => resolveLora({ r: 1, alpha: 1, targetModules: [] })).toThrow(RlhfError);
  });
});

describe("adapter initialisation and naming", () => {
  it("draws A uniformly in ±1/√in (PEFT's kaiming_uniform_ with a = √5)", () => {
    const inFeatures = 100;
    const a = initialLoraA(64, inFeatures, 42, 3, "o_proj");
    expect(a.length).toBe(64 * inFeatures);
    const bound = 1 / Math.sqrt(inFeatures);
    let sum = 0;
    let sumSq = 0;
    for (const v of a) {
      expect(Math.abs(v)).toBeLessThanOrEqual(bound);
      sum += v;
      sumSq += v * v;
    }
    const n = a.length;
    // Uniform(−b, b): mean 0, variance b²/3; 6400 draws put both well within these bounds.
    expect(Math.abs(sum / n)).toBeLessThan(0.05 * bound);
    expect(Math.abs(sumSq / n / (bound * bound / 3) - 1)).toBeLessThan(0.06);
    // Both halves of the range are used.
    expect(Math.min(...a)).toBeLessThan(-0.95 * bound);
    expect(Math.max(...a)).toBeGreaterThan(0.95 * bound);
  });

  it("is a pure function of (seed, layer, module)", () => {
    const base = initialLoraA(4, 8, 42, 0, "q_proj");
    expect(Array.from(initialLoraA(4, 8, 42, 0, "q_proj"))).toEqual(Array.from(base));
    for (const other of [initialLoraA(4, 8, 43, 0, "q_proj"), initialLoraA(4, 8, 42, 1, "q_proj"), initialLoraA(4, 8, 42, 0, "k_proj")]) {
      expect(Array.from(other)).not.toEqual(Array.from(base));
    }
    // Seeds that differ only above 2^32 differ too.
    expect(Array.from(initialLoraA(4, 8, 2 ** 32 + 42, 0, "q_proj"))).not.toEqual(Array.from(base));
  });

  it("gives every (pass, layer, module) its own dropout seed in [0, 2^53)", () => {
    const seen = new Set<number>();
    for (let pass = 0; pass < 20; ++pass) {
      for (let layer = 0; layer < 40; ++layer) {
        for (const m of LORA_TARGET_MODULES) {
          const s = dropoutSeed(42, pass, layer, m);
          expect(Number.isSafeInteger(s) && s >= 0).toBe(true);
          seen.add(s);
        }
      }
    }
    expect(seen.size).toBe(20 * 40 * LORA_TARGET_MODULES.length);
    expect(dropoutSeed(42, 3, 5, "up_proj")).toBe(dropoutSeed(42, 3, 5, "up_proj"));
    expect(dropoutSeed(43, 3, 5, "up_proj")).not.toBe(dropoutSeed(42, 3, 5, "up_proj"));
  });

  it("names adapters after their HF module, and maps them to PEFT's saved names", () => {
    const names = loraParameterNames("model.layers.7.mlp.down_proj");
    expect(names).toEqual({ a: "model.layers.7.mlp.down_proj.lora_A.weight", b: "model.layers.7.mlp.down_proj.lora_B.weight" });
    expect(peftTensorName(names.a)).toBe("base_model.model.model.layers.7.mlp.down_proj.lora_A.weight");
  });
});
