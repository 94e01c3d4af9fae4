/* A stand-in for libnvidia-ml.so.1 on machines without an NVIDIA driver, for gpurun's tests.
 * It exports the NVML entry points that gpu/discovery.cpp calls, with NVML's ABI.
 *   FAKE_NVML_DEVICES="NVIDIA A100-SXM4-40GB:40960:GPU-aaa;Tesla T4:15360:GPU-bbb"
 *     (name:memory MiB:uuid, ';'-separated) is what nvmlInit_v2 discovers;
 *   FAKE_NVML_FAIL=<code> makes nvmlInit_v2 return that NVML error code (9 when not a number);
 *   FAKE_NVML_PROCESSES="GPU-aaa:4242,4243;GPU-bbb:7" (uuid:pids, ';'-separated) are the compute
 *     processes nvmlDeviceGetComputeRunningProcesses_v3 reports. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAKE_MAX_DEVICES 16
#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_DRIVER_NOT_LOADED 9

typedef int nvmlReturn_t;
struct nvmlDevice_st {
  char name[96];
  char uuid[96];
  unsigned long long memory_mib;
  unsigned int index;
};
typedef struct nvmlDevice_st* nvmlDevice_t;
typedef struct {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
} nvmlMemory_t;
typedef struct {
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId;
  unsigned int computeInstanceId;
} nvmlProcessInfo_t;
typedef struct {
  char busIdLegacy[16];
  unsigned int domain;
  unsigned int bus;
  unsigned int device;
  unsigned int pciDeviceId;
  unsigned int pciSubSystemId;
  char busId[32];
} nvmlPciInfo_t;

static struct nvmlDevice_st devices[FAKE_MAX_DEVICES];
static unsigned int device_count;
static int initialized;

static void copy_field(char* to, size_t size, const char* from, size_t length) {
  if (length >= size) length = size - 1;
  memcpy(to, from, length);
  to[length] = '\0';
}

static void load_devices(void) {
  const char* spec = getenv("FAKE_NVML_DEVICES");
  device_count = 0;
  while (spec != NULL && *spec != '\0' && device_count < FAKE_MAX_DEVICES) {
    const char* end = strchr(spec, ';');
    size_t length = end != NULL ? (size_t)(end - spec) : strlen(spec);
    const char* first = memchr(spec, ':', length);
    const char* second = first != NULL ? memchr(first + 1, ':', length - (size_t)(first + 1 - spec)) : NULL;
    if (second != NULL) {
      struct nvmlDevice_st* device = &devices[device_count];
      copy_field(device->name, sizeof device->name, spec, (size_t)(first - spec));
      device->memory_mib = strtoull(first + 1, NULL, 10);
      copy_field(device->uuid, sizeof device->uuid, second + 1, length - (size_t)(second + 1 - spec));
      device->index = device_count++;
    }
    spec = end != NULL ? end + 1 : NULL;
  }
}

nvmlReturn_t nvmlInit_v2(void) {
  const char* fail = getenv("FAKE_NVML_FAIL");
  if (fail != NULL) {
    int code = atoi(fail);
    return code != 0 ? code : NVML_ERROR_DRIVER_NOT_LOADED;
  }
  load_devices();
  initialized = 1;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void) {
  if (!initialized) return NVML_ERROR_UNINITIALIZED;
  initialized = 0;
  return NVML_SUCCESS;
}

const char* nvmlErrorString(nvmlReturn_t result) {
  switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    default: return "Unknown Error";
  }
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* count) {
  if (!initialized) return NVML_ERROR_UNINITIALIZED;
  if (count == NULL) return NVML_ERROR_INVALID_ARGUMENT;
  *count = device_count;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t* device) {
  if (!initialized) return NVML_ERROR_UNINITIALIZED;
  if (device == NULL || index >= device_count) return NVML_ERROR_INVALID_ARGUMENT;
  *device = &devices[index];
  return NVML_SUCCESS;
}

static nvmlReturn_t copy_string(char* to, unsigned int length, const char* from) {
  if (strlen(from) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
  strcpy(to, from);
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char* name, unsigned int length) {
  if (!initialized) return NVML_ERROR_UNINITIALIZED;
  if (device == NULL || name == NULL) return NVML_ERROR_INVALID_ARGUMENT;
  return copy_string(name, length, device->name);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char* uuid, unsigned int length) {
  if (!initialized) return NVML_ERROR_UNINITIALIZED;
  if (device == NULL || uuid == NULL) return NVML_ERROR_INVALID_ARGUMENT;
  return copy_string(uuid, length, device->uuid);
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t* memory) {
  if (!initialized) return NVML_ERROR_UNINITIALIZED;
  if (device == NULL || memory == NULL) return NVML_ERROR_INVALID_ARGUMENT;
  memory->total = device->memory_mib << 20;
  memory->used = 0;
  memory->free = memory->total;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t* pci) {
  if (!initialized) return NVML_ERROR_UNINITIALIZED;
  if (device == NULL || pci == NULL) return NVML_ERROR_INVALID_ARGUMENT;
  memset(pci, 0, sizeof *pci);
  pci->bus = 0x10 + device->index;
  pci->pciDeviceId = 0x20b010de;
  snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "0000:%02X:00.0", pci->bus);
  snprintf(pci->busId, sizeof pci->busId, "00000000:%02X:00.0", pci->bus);
  return NVML_SUCCESS;
}

/* The pids FAKE_NVML_PROCESSES lists for the device: all of them when they fit, else
 * NVML_ERROR_INSUFFICIENT_SIZE with the count needed, as NVML does. */
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int* count, nvmlProcessInfo_t* infos) {
  if (!initialized) return NVML_ERROR_UNINITIALIZED;
  if (device == NULL || count == NULL) return NVML_ERROR_INVALID_ARGUMENT;
  unsigned int found = 0;
  unsigned int pids[256];
  const char* spec = getenv("FAKE_NVML_PROCESSES");
  size_t uuid_length = strlen(device->uuid);
  while (spec != NULL && *spec != '\0') {
    const char* end = strchr(spec, ';');
    size_t length = end != NULL ? (size_t)(end - spec) : strlen(spec);
    if (length > uuid_length && spec[uuid_length] == ':' && strncmp(spec, device->uuid, uuid_length) == 0) {
      const char* at = spec + uuid_length + 1;
      while (at < spec + length && found < 256) {
        char* next = NULL;
        pids[found++] = (unsigned int)strtoul(at, &next, 10);
        at = (*next == ',') ? next + 1 : spec + length;
      }
    }
    spec = end != NULL ? end + 1 : NULL;
  }
  if (found > *count) {
    *count = found;
    return NVML_ERROR_INSUFFICIENT_SIZE;
  }
  for (unsigned int i = 0; i < found; ++i) {
    memset(&infos[i], 0, sizeof infos[i]);
    infos[i].pid = pids[i];
    infos[i].usedGpuMemory = 1ULL << 30;
  }
  *count = found;
  return NVML_SUCCESS;
}
