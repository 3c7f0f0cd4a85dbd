"""forge bench workload: a CPU-bound handler (pure Python, no C library doing the work).

GET /        -> the 20th Fibonacci number by naive recursion (21,891 calls) and the primes below
                5,000 by trial division: a few milliseconds of interpreter (or compiled) work per request
GET /fib?n=N -> fib(N) for N <= 27
"""

from forge_runtime import Response


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def primes_below(limit):
    found = []
    for n in range(2, limit):
        for p in found:
            if p * p > n:
                found.append(n)
                break
            if n % p == 0:
                break
        else:
            found.append(n)
    return found


def app(request):
    if request.path == "/":
        primes = primes_below(5000)
        return Response.json({"fib20": fib(20), "primes": len(primes), "largest": primes[-1]})
    if request.path == "/fib":
        try:
            n = int(request.query.get("n", "20"))
        except (TypeError, ValueError):
            return Response.json({"error": "n must be an integer"}, status=400)
        if not 0 <= n <= 27:
            return Response.json({"error": "n must be between 0 and 27"}, status=400)
        return Response.json({"n": n, "fib": fib(n)})
    return Response.text("not found\n", status=404)
