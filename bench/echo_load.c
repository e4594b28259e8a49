/*
 * echo_load: closed-loop load generator for TCP echo servers (bench/echo.ts).
 *
 *   echo_load PORT CONNS SIZE WARMUP_S MEASURE_S [SERVER_PID [IDLE_S]]
 *
 * Opens CONNS connections to 127.0.0.1:PORT (at most MAX_OPENING at a time,
 * retrying refused or reset attempts for up to CONNECT_LIMIT_S) and does one
 * round trip on each. If IDLE_S > 0 the connections are then held idle for
 * IDLE_S seconds. Then every connection does ping-pong: send SIZE bytes, wait
 * for all SIZE bytes to come back, check them, send the next message. Round
 * trips completed in the MEASURE_S window after WARMUP_S are counted and their
 * latencies (CLOCK_MONOTONIC) recorded. With SERVER_PID, the resident set size
 * of that process and its descendants (/proc/PID/status VmRSS, summed) is
 * sampled every 50 ms or so; the peak and the value at the end of the idle
 * hold are reported.
 *
 * Prints one line of JSON on stdout and exits 0, or prints a reason on stderr
 * and exits 1 when a connection breaks or an echo is wrong after the connect
 * phase. A hard time limit (alarm) stops it in any case.
 *
 * Single-threaded, epoll, nonblocking sockets. Build: cc -O2 -o echo_load echo_load.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_OPENING 64
#define CONNECT_LIMIT_S 20
#define SAMPLE_EVERY_NS 50000000ull
#define MAX_SAMPLES 50000000u

enum state { UNOPENED, CONNECTING, SENDING, RECEIVING, READY };
enum phase { PH_CONNECT, PH_IDLE, PH_RUN };

struct conn {
  int fd;
  enum state state;
  uint32_t seq;
  uint32_t sent;
  uint32_t got;
  uint32_t attempts;
  uint64_t start_ns;
  uint64_t retry_at;
  uint64_t mcount;
};

static struct conn *conns;
static int nconns, port, size, server_pid;
static double warmup_s, measure_s, idle_s;
static int epfd;
static enum phase phase = PH_CONNECT;
static int opening; /* connections on their first round trip */
static int ready;   /* connections that finished their first round trip */
static uint64_t retries;
static char last_retry[128]; /* why the last connect-phase attempt was retried */
static uint64_t *lat;
static size_t nlat, caplat;
static uint64_t measured; /* round trips completed in the measure window */
static uint64_t measure_from, measure_to;
static unsigned char *txbuf, *rxbuf;
static long peak_rss_kib = -1, idle_rss_kib = -1;
static int peak_procs;
static uint64_t next_sample, sample_every = SAMPLE_EVERY_NS;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("echo_load: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "echo_load: hard time limit reached\n";
  ssize_t ignored = write(2, msg, sizeof msg - 1);
  (void)ignored;
  _exit(3);
}

static inline unsigned char pattern(int idx, uint32_t seq, uint32_t off) {
  return (unsigned char)(idx * 131u + seq * 17u + off * 7u + (off >> 8));
}

/* ---- server memory: VmRSS of a process and all its descendants ---- */

static long status_rss_kib(int pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long kib = -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kib = strtol(line + 6, NULL, 10);
      break;
    }
  }
  fclose(f);
  return kib < 0 ? 0 : kib; /* zombies have no VmRSS */
}

static void sample_rss(void) {
  static int *stack;
  static size_t cap;
  uint64_t t0 = now_ns();
  size_t top = 0;
  long total = 0;
  int procs = 0;
  if (!stack) {
    cap = 1024;
    stack = malloc(cap * sizeof *stack);
  }
  stack[top++] = server_pid;
  while (top > 0) {
    int pid = stack[--top];
    long kib = status_rss_kib(pid);
    if (kib < 0) continue;
    total += kib;
    procs++;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d) continue;
    struct dirent *e;
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      char cpath[300];
      snprintf(cpath, sizeof cpath, "/proc/%d/task/%s/children", pid, e->d_name);
      FILE *f = fopen(cpath, "r");
      if (!f) continue;
      int child;
      while (fscanf(f, "%d", &child) == 1) {
        if (top == cap) {
          cap *= 2;
          stack = realloc(stack, cap * sizeof *stack);
          if (!stack) die("out of memory");
        }
        stack[top++] = child;
      }
      fclose(f);
    }
    closedir(d);
  }
  if (procs > 0 && total > peak_rss_kib) peak_rss_kib = total;
  if (procs > peak_procs) peak_procs = procs;
  if (phase == PH_IDLE) idle_rss_kib = total;
  /* Keep the sampler's share of the CPU small when the tree is large (ncat). */
  uint64_t cost = now_ns() - t0;
  sample_every = cost * 20 > SAMPLE_EVERY_NS ? cost * 20 : SAMPLE_EVERY_NS;
  next_sample = now_ns() + sample_every;
}

/* ---- connections ---- */

static void watch(struct conn *c, uint32_t events, int op) {
  struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)(c - conns)};
  if (epoll_ctl(epfd, op, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
}

/* A failure before the first echo is retried; after it, it is fatal. */
static void fail(struct conn *c, const char *what, int err) {
  int idx = (int)(c - conns);
  if (phase == PH_CONNECT && c->state != READY) {
    if (c->attempts >= 1000) die("connection %d: %s: %s (gave up)", idx, what, strerror(err));
    snprintf(last_retry, sizeof last_retry, "%s%s%s", what, err ? ": " : "", err ? strerror(err) : "");
    close(c->fd);
    c->fd = -1;
    c->state = UNOPENED;
    c->retry_at = now_ns() + 10000000ull * (c->attempts < 10 ? c->attempts : 10);
    opening--;
    retries++;
    return;
  }
  die("connection %d after %u round trips: %s%s%s", idx, c->seq, what, err ? ": " : "",
      err ? strerror(err) : "");
}

static void send_some(struct conn *c) {
  int idx = (int)(c - conns);
  while (c->sent < (uint32_t)size) {
    uint32_t n = (uint32_t)size - c->sent;
    for (uint32_t i = 0; i < n; i++) txbuf[i] = pattern(idx, c->seq, c->sent + i);
    ssize_t w = send(c->fd, txbuf, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (c->state != SENDING) watch(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
        c->state = SENDING;
        return;
      }
      if (errno == EINTR) continue;
      fail(c, "send", errno);
      return;
    }
    c->sent += (uint32_t)w;
  }
  if (c->state == SENDING) watch(c, EPOLLIN, EPOLL_CTL_MOD);
  c->state = RECEIVING;
}

static void start_round(struct conn *c) {
  c->seq++;
  c->sent = 0;
  c->got = 0;
  c->start_ns = now_ns();
  c->state = RECEIVING; /* send_some switches to SENDING on a short write */
  send_some(c);
}

static void complete_round(struct conn *c, uint64_t t) {
  if (phase == PH_CONNECT) {
    c->state = READY;
    opening--;
    ready++;
    return;
  }
  if (t >= measure_from && t < measure_to) {
    measured++;
    c->mcount++;
    if (nlat < MAX_SAMPLES) {
      if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 65536;
        lat = realloc(lat, caplat * sizeof *lat);
        if (!lat) die("out of memory");
      }
      lat[nlat++] = t - c->start_ns;
    }
  }
  if (t < measure_to) start_round(c);
  else c->state = READY;
}

static void receive(struct conn *c) {
  int idx = (int)(c - conns);
  if (c->state != RECEIVING && c->state != SENDING) {
    /* Bytes (or EOF) while nothing is outstanding. */
    ssize_t r = recv(c->fd, rxbuf, (size_t)size, 0);
    if (r == 0) fail(c, "closed by the server", 0);
    else if (r < 0 && errno != EAGAIN && errno != EINTR) fail(c, "recv", errno);
    else if (r > 0) die("connection %d: %zd unexpected bytes", idx, r);
    return;
  }
  for (;;) {
    uint32_t want = (uint32_t)size - c->got;
    ssize_t r = recv(c->fd, rxbuf, want, 0);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      fail(c, "recv", errno);
      return;
    }
    if (r == 0) {
      fail(c, "closed by the server", 0);
      return;
    }
    if (c->got + (uint32_t)r > c->sent) die("connection %d: echo ahead of what was sent", idx);
    for (ssize_t i = 0; i < r; i++) {
      if (rxbuf[i] != pattern(idx, c->seq, c->got + (uint32_t)i)) {
        die("connection %d round trip %u: wrong byte at offset %u", idx, c->seq,
            c->got + (uint32_t)i);
      }
    }
    c->got += (uint32_t)r;
    if (c->got == (uint32_t)size) {
      complete_round(c, now_ns());
      return;
    }
  }
}

static void open_conn(struct conn *c) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  c->attempts++;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) die("socket: %s", strerror(errno));
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  opening++;
  c->seq = 0;
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
    watch(c, EPOLLIN, EPOLL_CTL_ADD);
    start_round(c);
  } else if (errno == EINPROGRESS) {
    c->state = CONNECTING;
    watch(c, EPOLLOUT, EPOLL_CTL_ADD);
  } else {
    c->state = CONNECTING;
    fail(c, "connect", errno);
  }
}

static void on_event(struct conn *c, uint32_t events) {
  if (c->state == CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      fail(c, "connect", err);
      return;
    }
    if (!(events & EPOLLOUT)) return;
    watch(c, EPOLLIN, EPOLL_CTL_MOD);
    start_round(c);
    return;
  }
  if ((events & EPOLLOUT) && c->state == SENDING) send_some(c);
  if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) receive(c);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static double pct_us(double p) {
  if (nlat == 0) return 0;
  size_t i = (size_t)(p * (double)(nlat - 1) + 0.5);
  return (double)lat[i] / 1000.0;
}

static void loop_until(uint64_t until, int stop_when_ready) {
  struct epoll_event evs[256];
  for (;;) {
    uint64_t t = now_ns();
    if (server_pid > 0 && t >= next_sample) sample_rss(), t = now_ns();
    if (stop_when_ready && ready == nconns) return;
    if (t >= until) {
      if (stop_when_ready) {
        die("only %d of %d connections got an echo within %d s (%llu retries%s%s)", ready, nconns,
            CONNECT_LIMIT_S, (unsigned long long)retries, retries ? ", the last after " : "",
            last_retry);
      }
      return;
    }
    if (phase == PH_CONNECT) {
      for (int i = 0; i < nconns && opening < MAX_OPENING; i++) {
        if (conns[i].state == UNOPENED && conns[i].retry_at <= t) open_conn(&conns[i]);
      }
    }
    uint64_t wake = until;
    if (server_pid > 0 && next_sample < wake) wake = next_sample;
    if (phase == PH_CONNECT && opening < MAX_OPENING && ready + opening < nconns) {
      wake = t + 2000000ull < wake ? t + 2000000ull : wake; /* pending retries */
    }
    int timeout = wake > t ? (int)((wake - t + 999999) / 1000000) : 0;
    int n = epoll_wait(epfd, evs, 256, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++) on_event(&conns[evs[i].data.u32], evs[i].events);
  }
}

int main(int argc, char **argv) {
  if (argc < 6 || argc > 8) {
    fprintf(stderr,
            "usage: echo_load PORT CONNS SIZE WARMUP_S MEASURE_S [SERVER_PID [IDLE_S]]\n");
    return 2;
  }
  port = atoi(argv[1]);
  nconns = atoi(argv[2]);
  size = atoi(argv[3]);
  warmup_s = atof(argv[4]);
  measure_s = atof(argv[5]);
  server_pid = argc > 6 ? atoi(argv[6]) : 0;
  idle_s = argc > 7 ? atof(argv[7]) : 0;
  if (port <= 0 || port > 65535 || nconns <= 0 || size <= 0 || size > (1 << 20) ||
      warmup_s < 0 || measure_s <= 0 || idle_s < 0) {
    fprintf(stderr, "echo_load: bad arguments\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGALRM, on_alarm);
  alarm((unsigned)(CONNECT_LIMIT_S + idle_s + warmup_s + measure_s + 10));

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nconns + 16) {
    die("%d connections need more file descriptors than the limit of %lu", nconns,
        (unsigned long)rl.rlim_cur);
  }

  conns = calloc((size_t)nconns, sizeof *conns);
  txbuf = malloc((size_t)size);
  rxbuf = malloc((size_t)size);
  if (!conns || !txbuf || !rxbuf) die("out of memory");
  for (int i = 0; i < nconns; i++) conns[i].fd = -1;
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) die("epoll_create1: %s", strerror(errno));

  uint64_t t0 = now_ns();
  loop_until(t0 + CONNECT_LIMIT_S * 1000000000ull, 1);
  uint64_t connected = now_ns();

  if (idle_s > 0) {
    phase = PH_IDLE;
    loop_until(connected + (uint64_t)(idle_s * 1e9), 0);
    if (server_pid > 0) sample_rss(); /* the idle figure: after the hold */
  }

  phase = PH_RUN;
  uint64_t start = now_ns();
  measure_from = start + (uint64_t)(warmup_s * 1e9);
  measure_to = measure_from + (uint64_t)(measure_s * 1e9);
  for (int i = 0; i < nconns; i++) start_round(&conns[i]);
  loop_until(measure_to, 0);

  qsort(lat, nlat, sizeof *lat, cmp_u64);
  double seconds = (double)(measure_to - measure_from) / 1e9;
  printf("{\"conns\":%d,\"size\":%d,\"msgs\":%llu,\"seconds\":%.3f,\"rate\":%.1f,"
         "\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,\"errors\":0,"
         "\"connect_s\":%.3f,\"retries\":%llu,\"peak_rss_kib\":%ld,\"idle_rss_kib\":%ld,"
         "\"procs\":%d,",
         nconns, size, (unsigned long long)measured, seconds, (double)measured / seconds,
         pct_us(0.50), pct_us(0.99), nlat ? (double)lat[nlat - 1] / 1000.0 : 0.0,
         (double)(connected - t0) / 1e9, (unsigned long long)retries, peak_rss_kib,
         idle_rss_kib, peak_procs);
  {
    uint64_t *mc = malloc(nconns * sizeof *mc);
    double sum = 0, sq = 0;
    for (int i = 0; i < nconns; i++) { mc[i] = conns[i].mcount; sum += mc[i]; sq += (double)mc[i] * mc[i]; }
    qsort(mc, nconns, sizeof *mc, cmp_u64);
    printf("\"p999_us\":%.1f,\"per_conn\":{\"min\":%llu,\"p1\":%llu,\"p50\":%llu,\"p99\":%llu,\"max\":%llu,\"jain\":%.3f}}\n",
           pct_us(0.999), (unsigned long long)mc[0], (unsigned long long)mc[nconns / 100],
           (unsigned long long)mc[nconns / 2], (unsigned long long)mc[nconns - 1 - nconns / 100],
           (unsigned long long)mc[nconns - 1], sq > 0 ? sum * sum / (nconns * sq) : 0);
  }
  fflush(stdout);
  return 0;
}
