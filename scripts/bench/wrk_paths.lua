-- wrk script for limits.sh: each request GETs the next path of the file given after "--"
-- (one path a line), starting at a random one, so that connections do not walk in step.
local paths = {}
local next_index = 1

function init(args)
  for path in io.lines(args[1]) do
    paths[#paths + 1] = path
  end
  next_index = math.random(#paths)
end

function request()
  local path = paths[next_index]
  next_index = next_index % #paths + 1
  return wrk.format("GET", path)
end
