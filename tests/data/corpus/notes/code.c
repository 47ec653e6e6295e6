/* A small ring buffer, the shape of the window part of the cache. */
#include <stddef.h>

struct ring {
    float *slots;
    size_t capacity;
    size_t head;   /* next slot to write */
    size_t count;  /* slots in use */
};

static void ring_push(struct ring *r, float value)
{
    r->slots[r->head] = value;
    r->head = (r->head + 1) % r->capacity;
    if (r->count < r->capacity)
        r->count++;
}

static float ring_oldest(const struct ring *r)
{
    size_t tail = (r->head + r->capacity - r->count) % r->capacity;
    return r->slots[tail];
}
