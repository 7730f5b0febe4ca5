// The two kernel families in headless Chromium (SwiftShader, a CPU adapter): every kernel variant
// the engine builds compiles with Chromium's WGSL compiler (Tint) on a device requested with
// WebGPU's default limits, `auto` picks the CPU-adapter family on this CPU adapter, and the GPU
// family, forced, answers the default model's question with the native engine's greedy tokens.
// SwiftShader pays dearly for workgroup barriers (see shaders/rms_norm.wgsl), which the GPU family
// is made of, so that check decodes a few tokens only; the test reports what they cost.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openApp, REPO, startServer, BUILT, requireBuilt } from './harness.mjs';

const [MODEL] = BUILT.model;
const [BURROW] = BUILT.burrow;
const GOLDEN = JSON.parse(readFileSync(join(REPO, 'tests', 'golden', 'smollm2', 'greedy_f32model.json'), 'utf8'));
const QUESTION = GOLDEN.chat_messages[0].content;
// Tokens the GPU family decodes in the browser.
const GPU_FAMILY_TOKENS = 4;
const LOAD_TIMEOUT = 600_000;

test('every kernel variant compiles with Chromium\'s Tint under WebGPU\'s default limits', async (t) => {
  requireBuilt(BUILT.model, BUILT.pkg, BUILT.burrow);
  const { variants } = JSON.parse(execFileSync(BURROW, ['shaders', '--json'], { encoding: 'utf8', maxBuffer: 64 << 20 }).trim());
  assert.ok(variants.length > 300, `${variants.length} variants`);
  const server = await startServer(t, { modelsDir: join(REPO, '.cache', 'models'), engine: 'real' });
  const { page } = await openApp(t, server);
  const started = Date.now();
  // Every module goes through Tint (parsing, types, uniformity); pipelines (Tint's backend,
  // SwiftShader's compiler, the layout against the limits: 0.3 s each here) for every kernel but
  // the matvec's fold combinations between none and all, which differ only in bindings.
  for (const v of variants) v.pipeline = !/^matvec\.[a-z0-9_]+\+/.test(v.name) || v.name.endsWith('+norm+bias+residual+glu');
  const result = await page.evaluate(async (variants) => {
    const adapter = await navigator.gpu.requestAdapter();
    const subgroups = adapter.features.has('subgroups');
    const f16 = adapter.features.has('shader-f16');
    // No requiredLimits: WebGPU's defaults.
    const requiredFeatures = [...(subgroups ? ['subgroups'] : []), ...(f16 ? ['shader-f16'] : [])];
    const device = await adapter.requestDevice({ requiredFeatures });
    const failures = [];
    let compiled = 0;
    for (const v of variants) {
      if ((v.subgroups && !subgroups) || (v.f16 && !f16)) continue;
      // Tint wants the extension declared; naga (natively) does not take the line.
      const code = (v.subgroups ? 'enable subgroups;\n' : '') + v.wgsl;
      device.pushErrorScope('validation');
      const module = device.createShaderModule({ code, label: v.name });
      const info = await module.getCompilationInfo();
      const errors = info.messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
      if (v.pipeline) {
        try {
          await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: v.name });
        } catch (error) {
          errors.push(String(error?.message ?? error));
        }
      }
      const scoped = await device.popErrorScope();
      if (scoped) errors.push(scoped.message);
      if (errors.length) failures.push(`${v.name}: ${errors.join('; ')}`);
      compiled += 1;
    }
    // The check can fail: 20 KiB of workgroup memory is past the default limits.
    device.pushErrorScope('validation');
    const big = device.createShaderModule({ code: 'var<workgroup> big: array<f32, 5120>;\n@compute @workgroup_size(64)\nfn main(@builtin(local_invocation_index) i: u32) { big[i] = 1.0; }' });
    let refused = false;
    await device.createComputePipelineAsync({ layout: 'auto', compute: { module: big, entryPoint: 'main' } }).catch(() => { refused = true; });
    refused ||= Boolean(await device.popErrorScope());
    const runs = (v) => (subgroups || !v.subgroups) && (f16 || !v.f16);
    return { failures, compiled, pipelines: variants.filter((v) => v.pipeline && runs(v)).length, subgroups, f16, refused };
  }, variants);
  t.diagnostic(`${result.compiled} variants compiled, ${result.pipelines} into pipelines (subgroups: ${result.subgroups}, shader-f16: ${result.f16}), `
    + `in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  assert.ok(result.refused, 'a pipeline past the default limits was accepted');
  assert.deepEqual(result.failures, []);
});

// The native engine's greedy tokens with the GPU family (lavapipe here).
function nativeIds(maxTokens) {
  const out = execFileSync(BURROW, ['generate', '--model', MODEL, '--backend', 'wgpu', '--kernels', 'gpu', '--chat', '--prompt', QUESTION,
    '--temperature', '0', '--max-tokens', String(maxTokens), '--json'], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').at(-1)).ids;
}

test('auto picks the CPU-adapter family on SwiftShader; the GPU family answers as natively', async (t) => {
  requireBuilt(BUILT.model, BUILT.pkg, BUILT.burrow);
  const native = nativeIds(GPU_FAMILY_TOKENS);
  const server = await startServer(t, { modelsDir: join(REPO, '.cache', 'models'), engine: 'real' });
  const { page } = await openApp(t, server);
  const run = (kernels, maxTokens) => page.evaluate(async ({ kernels, maxTokens, question }) => {
    const { Burrow } = await import('/web/burrow.js');
    const engine = await Burrow.create({ model: new URL('/models/SmolLM2-135M-Instruct.Q4_1.gguf', location.href).href, kernels });
    const started = performance.now();
    const reply = await engine.chat.completions.create({ messages: [{ role: 'user', content: question }], temperature: 0, max_tokens: maxTokens });
    const seconds = (performance.now() - started) / 1000;
    const model = engine.model;
    engine.unload();
    return { ids: reply.token_ids, kernels: model.kernels, seconds };
  }, { kernels, maxTokens, question: QUESTION });
  const auto = await run(undefined, 1);
  assert.equal(auto.kernels, 'cpu-adapter', 'auto on a CPU adapter');
  const gpu = await run('gpu', GPU_FAMILY_TOKENS);
  assert.equal(gpu.kernels, 'gpu');
  assert.deepEqual(gpu.ids, native, 'the GPU family in the browser gives the native GPU family\'s tokens');
  t.diagnostic(`GPU family on SwiftShader: ${GPU_FAMILY_TOKENS} tokens (prompt and decode) in ${gpu.seconds.toFixed(1)} s`);
});
