// Whether this device can run a model, checked before anything is downloaded: by the engine
// worker (which refuses) and by the page's first-visit text (which says so up front).

// Storage buffers one kernel binds (shaders/rope_kv.wgsl), WebGPU's guaranteed minimum.
const STORAGE_BUFFERS_NEEDED = 8;
// Share of the device's memory a model may take: the browser, the page and the system need the rest.
const MEMORY_SHARE = 0.5;
const GIB = 1024 ** 3;
const gb = (bytes) => (bytes / 1e9).toFixed(1);

// Whether the adapter is a CPU implementation of WebGPU (SwiftShader, llvmpipe, WARP), which the
// engine cannot tell by itself in a browser: the CPU-adapter kernels suit it.
function isCpuAdapter(adapter) {
  const info = adapter.info ?? {};
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`;
  return Boolean(info.isFallbackAdapter || adapter.isFallbackAdapter) || /swiftshader|llvmpipe|lavapipe|warp|software/i.test(text);
}

// A WebGPU adapter with the limits the kernels need and, when the size is known in advance,
// memory for the weights (navigator.deviceMemory: the device's RAM in GiB, rounded down and capped
// by the browser, so this only refuses what certainly cannot fit).
// Returns {code: null, cpuAdapter} when it can, else {code: 'no-webgpu' | 'too-large', message}.
export async function checkDevice(expectedSize) {
  const adapter = await globalThis.navigator.gpu?.requestAdapter().catch(() => null);
  if (!adapter) {
    return { code: 'no-webgpu', message: 'This browser cannot run Burrow: WebGPU is not available (try a recent Chrome, Edge or Safari).' };
  }
  const buffers = adapter.limits.maxStorageBuffersPerShaderStage;
  if (buffers < STORAGE_BUFFERS_NEEDED) {
    return { code: 'no-webgpu', message: `This GPU lets a kernel use ${buffers} storage buffers; Burrow needs ${STORAGE_BUFFERS_NEEDED}.` };
  }
  const memory = globalThis.navigator.deviceMemory;
  if (expectedSize && memory && expectedSize > memory * GIB * MEMORY_SHARE) {
    return {
      code: 'too-large',
      message: `This model needs about ${gb(expectedSize)} GB of memory; this device has ${memory} GB, so it will not fit. Pick a smaller model.`,
    };
  }
  return { code: null, cpuAdapter: isCpuAdapter(adapter) };
}
